package main

import "go.temporal.io/sdk/activity"

func activityRegisterOptions() activity.RegisterOptions {
	return activity.RegisterOptions{Name: "BareChat"}
}
