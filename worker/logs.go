package worker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// LogSettings are what a worker does on start about retention and the log
// archive, read from the environment by LogSettingsFromEnv:
//
//	AUTOGLM_RETENTION                  "off" leaves the bucket's lifecycle rules alone
//	AUTOGLM_RETENTION_LOG_DAYS         task logs (and their archives) expire after (90; 0 keeps them)
//	AUTOGLM_RETENTION_CHECKPOINT_DAYS  checkpoints expire after (30; 0 keeps them)
//	AUTOGLM_LOG_ARCHIVE_EVERY          install the log archive schedule with this interval (unset: do not)
//	AUTOGLM_LOG_ARCHIVE_OLDER_THAN     the schedule archives logs older than (168h)
type LogSettings struct {
	ApplyRetention bool
	Retention      storage.Retention
	// Schedule is installed when its Every is set.
	Schedule taskclient.LogArchiveSchedule
}

// LogSettingsFromEnv reads LogSettings.
func LogSettingsFromEnv() (LogSettings, error) {
	s := LogSettings{ApplyRetention: !strings.EqualFold(os.Getenv("AUTOGLM_RETENTION"), "off"), Retention: storage.DefaultRetention()}
	for c, key := range map[storage.Category]string{storage.Log: "AUTOGLM_RETENTION_LOG_DAYS", storage.Checkpoint: "AUTOGLM_RETENTION_CHECKPOINT_DAYS"} {
		if v := os.Getenv(key); v != "" {
			d, err := strconv.Atoi(v)
			if err != nil || d < 0 {
				return s, fmt.Errorf("worker: %s=%q is not a number of days", key, v)
			}
			s.Retention.Days[c] = d
		}
	}
	for key, dst := range map[string]*time.Duration{"AUTOGLM_LOG_ARCHIVE_EVERY": &s.Schedule.Every, "AUTOGLM_LOG_ARCHIVE_OLDER_THAN": &s.Schedule.OlderThan} {
		if v := os.Getenv(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return s, fmt.Errorf("worker: %s=%q is not a duration like 24h", key, v)
			}
			*dst = d
		}
	}
	return s, nil
}

// prepareLogs applies the retention rules and installs the log archive
// schedule. Neither stops a worker that may not do them (the rights to
// configure a bucket or a schedule are often an operator's): it says so
// in the log instead.
func prepareLogs(ctx context.Context, s LogSettings, tc client.Client, store storage.Store, log *logrus.Logger) {
	if s.ApplyRetention {
		if err := storage.ApplyRetention(ctx, store, s.Retention); err != nil {
			log.WithError(err).Warn("lifecycle rules not applied; set AUTOGLM_RETENTION=off to stop trying")
		} else {
			log.WithField("rules", len(s.Retention.Rules())).Info("lifecycle rules applied")
		}
	}
	if s.Schedule.Every <= 0 {
		return
	}
	created, err := taskclient.InstallLogArchiveSchedule(ctx, tc, s.Schedule)
	if err != nil {
		log.WithError(err).Warn("log archive schedule not installed")
		return
	}
	log.WithFields(logrus.Fields{"schedule": task.LogArchiveScheduleID, "every": s.Schedule.Every, "created": created}).Info("log archive schedule installed")
}
