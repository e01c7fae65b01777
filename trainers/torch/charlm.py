#!/usr/bin/python3
"""A character-level language model trained with PyTorch on the CPU, following
autoglm-flow's trainer contract (README: "Fine-tuning: the trainer contract").

It is the real PyTorch trainer of the tests: it reads the spec the node's
runner gives it (AUTOGLM_TRAINER_SPEC), trains on the text of the training
file's messages, writes checkpoint-<step>/ folders with trainer_state.json and
the completion marker, saves on SIGUSR1 and goes on, saves on SIGTERM and
exits, and resumes from AUTOGLM_RESUME_FROM with its weights, optimizer state,
random state and data position. It downloads nothing.

Run with Debian's python3-torch: /usr/bin/python3 trainers/torch/charlm.py
"""

import json
import os
import signal
import sys
import time

import torch
from torch import nn

CONTEXT = 8
MARKER = "autoglm-complete"


def training_text(path):
    text = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                example = json.loads(line)
            except ValueError:
                continue
            for m in example.get("messages", []):
                text.append(str(m.get("content", "")) + "\n")
    return "".join(text).encode("utf-8")


class CharLM(nn.Module):
    def __init__(self, vocab, hidden=128, embed=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.hidden = nn.Linear(CONTEXT * embed, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(self.embed(x).flatten(1))))


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def count_checkpoints(out):
    return sum(1 for n in os.listdir(out) if n.startswith("checkpoint-") and os.path.isdir(os.path.join(out, n)))


class Run:
    def __init__(self, spec):
        self.spec = spec
        hp = spec["hyperparameters"]
        self.batch = hp["batch_size"]
        text = training_text(spec["training_file"])
        vocab = sorted(set(text))
        self.vocab = [0] + [c for c in vocab if c != 0]
        index = {c: i for i, c in enumerate(self.vocab)}
        data = torch.tensor([index[c] for c in text], dtype=torch.long)
        padded = torch.cat([torch.zeros(CONTEXT, dtype=torch.long), data])
        # Example i predicts data[i] from the CONTEXT characters before it.
        self.inputs = padded.unfold(0, CONTEXT, 1)[: len(data)]
        self.targets = data
        self.per_epoch = (len(data) + self.batch - 1) // self.batch
        self.total = self.per_epoch * hp["n_epochs"]
        torch.manual_seed(spec["seed"])
        self.model = CharLM(len(self.vocab))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-3 * hp["learning_rate_multiplier"])
        self.step, self.epoch, self.index = 0, 0, 0
        self.history = []

    def order(self):
        g = torch.Generator()
        g.manual_seed(self.spec["seed"] * 1000003 + self.epoch)
        return torch.randperm(len(self.targets), generator=g)

    def state(self):
        return {
            "global_step": self.step,
            "epoch": self.step / self.per_epoch,
            "max_steps": self.total,
            "log_history": self.history,
            "data_position": {"epoch": self.epoch, "index": self.index},
        }

    def write(self, folder, full):
        torch.save(self.model.state_dict(), os.path.join(folder, "model.pt"))
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"architecture": "char-mlp", "vocab": self.vocab, "context": CONTEXT}, f)
        if full:
            torch.save(self.opt.state_dict(), os.path.join(folder, "optimizer.pt"))
            torch.save({"torch": torch.get_rng_state()}, os.path.join(folder, "rng_state.pth"))
        with open(os.path.join(folder, "trainer_state.json"), "w") as f:
            json.dump(self.state(), f, indent=2)
        with open(os.path.join(folder, MARKER), "w") as f:
            f.write(str(self.step))

    def save(self):
        out = self.spec["output_dir"]
        folder = os.path.join(out, "checkpoint-%d" % self.step)
        if os.path.exists(folder):
            return
        # The contract: wait rather than fill the disk.
        while count_checkpoints(out) >= self.spec["max_local_checkpoints"]:
            time.sleep(0.02)
        os.mkdir(folder)
        self.write(folder, True)

    def load(self, folder):
        self.model.load_state_dict(torch.load(os.path.join(folder, "model.pt")))
        self.opt.load_state_dict(torch.load(os.path.join(folder, "optimizer.pt")))
        torch.set_rng_state(torch.load(os.path.join(folder, "rng_state.pth"))["torch"])
        with open(os.path.join(folder, "trainer_state.json")) as f:
            st = json.load(f)
        self.step = st["global_step"]
        self.history = st["log_history"]
        self.epoch = st["data_position"]["epoch"]
        self.index = st["data_position"]["index"]


def main():
    with open(os.environ["AUTOGLM_TRAINER_SPEC"]) as f:
        spec = json.load(f)
    torch.set_num_threads(1)
    run = Run(spec)
    if spec.get("resume_from"):
        run.load(spec["resume_from"])
        say({"resumed_from": run.step})

    flags = {"save": False, "stop": False}
    signal.signal(signal.SIGUSR1, lambda *_: flags.__setitem__("save", True))
    signal.signal(signal.SIGTERM, lambda *_: flags.__setitem__("stop", True))

    loss_fn = nn.CrossEntropyLoss()
    order, order_epoch = None, -1
    while run.step < run.total:
        if run.index >= len(run.targets):
            run.epoch, run.index = run.epoch + 1, 0
        if order_epoch != run.epoch:
            order, order_epoch = run.order(), run.epoch
        idx = order[run.index : run.index + run.batch]
        loss = loss_fn(run.model(run.inputs[idx]), run.targets[idx])
        run.opt.zero_grad()
        loss.backward()
        run.opt.step()
        run.index += len(idx)
        run.step += 1
        entry = {"step": run.step, "epoch": run.step / run.per_epoch, "loss": loss.item()}
        run.history.append(entry)
        say(entry)
        if run.step == run.total:
            break
        if run.step % spec["save_steps"] == 0 or flags["save"] or flags["stop"]:
            flags["save"] = False
            run.save()
        if flags["stop"]:
            return
    final = os.path.join(spec["output_dir"], "final")
    os.makedirs(final, exist_ok=True)
    run.write(final, False)


if __name__ == "__main__":
    main()
