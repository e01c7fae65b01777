package activities

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/webhook"
)

// webhookAuditPrefix keeps one record per delivered event and subscriber.
const webhookAuditPrefix = "audit/webhooks/"

// EmitEventResult says whether the event went out to anyone.
type EmitEventResult struct {
	Subscribers int `json:"subscribers"`
}

// EmitEvent starts the delivery of an event to the tenant's subscribers
// (a NotifyWorkflow of its own, so a receiver that is down holds up
// nothing else). A tenant with no subscriber for the type costs nothing.
func (a *Activities) EmitEvent(ctx context.Context, in task.Event) (EmitEventResult, error) {
	subs, err := a.subscribers(in.Tenant, in.Type)
	if err != nil || len(subs) == 0 || a.Temporal == nil {
		return EmitEventResult{}, asApplicationError(err)
	}
	_, err = a.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: task.NotifyWorkflowID(in.ID), TaskQueue: task.TaskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            in.Type + " to " + in.Tenant + "'s webhooks",
	}, task.NotifyWorkflowType, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		err = nil // an earlier attempt started it
	}
	return EmitEventResult{Subscribers: len(subs)}, err
}

// emit emits ev from inside an activity, for events of a stage that
// runs no activity of its own (the approval stage's): its delivery, like
// every event's, is a NotifyWorkflow of its own, started once per event
// ID. A failure is logged, never the activity's.
func (a *Activities) emit(ctx context.Context, ev task.Event) {
	if _, err := a.EmitEvent(ctx, ev); err != nil {
		activity.GetLogger(ctx).Warn("event not emitted to webhooks", "event", ev.ID, "error", err)
	}
}

func (a *Activities) subscribers(tenant, eventType string) ([]string, error) {
	if a.Policy == nil {
		return nil, nil
	}
	p, err := a.Policy.Current()
	if err != nil {
		return nil, err
	}
	t, err := p.Tenant(tenant)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, w := range t.Webhooks {
		if w.Wants(eventType) {
			names = append(names, w.Name)
		}
	}
	return names, nil
}

// ListSubscribersResult names the subscribers of an event.
type ListSubscribersResult struct {
	Names []string `json:"names"`
}

// ListSubscribers names the tenant's subscribers to the event's type.
func (a *Activities) ListSubscribers(ctx context.Context, in task.Event) (ListSubscribersResult, error) {
	names, err := a.subscribers(in.Tenant, in.Type)
	return ListSubscribersResult{Names: names}, asApplicationError(err)
}

// DeliverInput is one event to one subscriber.
type DeliverInput struct {
	Event      task.Event `json:"event"`
	Subscriber string     `json:"subscriber"`
}

// DeliverWebhook sends the event to one subscriber, signed with the
// secret the policy points at (read here, never carried in a payload).
// A receiver that is down or answers anything but 2xx is retried by the
// workflow's policy; the successful delivery is recorded in the bucket.
func (a *Activities) DeliverWebhook(ctx context.Context, in DeliverInput) (task.Delivery, error) {
	d, err := a.deliver(ctx, in)
	return d, asApplicationError(err)
}

func (a *Activities) deliver(ctx context.Context, in DeliverInput) (task.Delivery, error) {
	p, err := a.Policy.Current()
	if err != nil {
		return task.Delivery{}, err
	}
	t, err := p.Tenant(in.Event.Tenant)
	if err != nil {
		return task.Delivery{}, err
	}
	w, ok := t.Webhook(in.Subscriber)
	if !ok {
		return task.Delivery{}, task.Errorf(task.NotFound, "tenant %s has no webhook %q any more", in.Event.Tenant, in.Subscriber)
	}
	if err := storage.CheckID("webhook name", w.Name); err != nil {
		return task.Delivery{}, err // it names the audit record
	}
	secret, err := w.Secret()
	if err != nil {
		return task.Delivery{}, err
	}
	body, err := json.Marshal(webhook.Payload{ID: in.Event.ID, Object: "event", CreatedAt: in.Event.CreatedAt.Unix(), Type: in.Event.Type, Data: anyMap(in.Event.Data)})
	if err != nil {
		return task.Delivery{}, err
	}
	attempt := activity.GetInfo(ctx).Attempt
	client := webhook.NewClient(webhook.Options{AllowLoopback: w.AllowLoopback, Resolve: webhookResolver()})
	defer client.CloseIdleConnections()
	_, err = webhook.CheckURL(w.URL, w.AllowLoopback)
	var sent webhook.Delivery
	if err == nil {
		sent, err = webhook.Send(ctx, client, w.URL, secret, in.Event.ID, body)
	}
	if errors.Is(err, webhook.ErrRefused) {
		// Where the URL leads is not the receiver being down: no retry.
		// The refusal and its reason go to the delivery audit.
		d := task.Delivery{Subscriber: w.Name, Attempts: attempt, Time: time.Now().UTC(), Error: err.Error()}
		activity.GetLogger(ctx).Warn("webhook refused", "event", in.Event.ID, "subscriber", w.Name, "error", err)
		if _, perr := a.putJSON(ctx, webhookAuditKey(in.Event, w.Name), storage.Data, map[string]any{"event": in.Event, "delivery": d}); perr != nil {
			return task.Delivery{}, perr
		}
		return task.Delivery{}, task.Errorf(task.PermissionDenied, "%v", err)
	}
	if err != nil {
		activity.GetLogger(ctx).Warn("webhook not delivered; retrying", "event", in.Event.ID, "subscriber", w.Name, "attempt", attempt, "error", err)
		return task.Delivery{}, err
	}
	d := task.Delivery{Subscriber: w.Name, Delivered: true, Attempts: attempt, StatusCode: sent.StatusCode, Time: time.Now().UTC()}
	_, err = a.putJSON(ctx, webhookAuditKey(in.Event, w.Name), storage.Data, map[string]any{"event": in.Event, "delivery": d})
	return d, err
}

// webhookAuditKey is where the delivery of an event to a subscriber, or
// its refusal, is recorded.
func webhookAuditKey(ev task.Event, subscriber string) string {
	return webhookAuditPrefix + ev.Tenant + "/" + ev.ID + "/" + subscriber + ".json"
}

// webhookResolver is the system's resolver, or, where the worker's
// AUTOGLM_WEBHOOK_HOSTS maps a host to addresses (host=addr,...; as curl's
// --resolve does), those addresses for that host. Either way every
// address is checked as it is dialed.
var webhookResolver = sync.OnceValue(func() webhook.Resolver {
	hosts := map[string][]netip.Addr{}
	for _, pair := range strings.Split(os.Getenv("AUTOGLM_WEBHOOK_HOSTS"), ",") {
		host, addr, ok := strings.Cut(strings.TrimSpace(pair), "=")
		ip, err := netip.ParseAddr(strings.TrimSpace(addr))
		if ok && err == nil {
			hosts[strings.ToLower(strings.TrimSpace(host))] = append(hosts[strings.ToLower(strings.TrimSpace(host))], ip)
		}
	}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		if ips, ok := hosts[strings.ToLower(host)]; ok {
			return ips, nil
		}
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
})

func anyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
