package storage

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/minio/minio-go/v7"
)

func TestRetentionRules(t *testing.T) {
	got := DefaultRetention().Rules()
	want := []LifecycleRule{
		{ID: "autoglm-checkpoint", Prefix: "checkpoint/", Days: 30, NoncurrentDays: 1, Enabled: true},
		{ID: "autoglm-log", Prefix: "log/", Days: 90, NoncurrentDays: 1, Enabled: true},
		{ID: "autoglm-log-archive", TagKey: TagKind, TagValue: KindLogArc, Days: 90, NoncurrentDays: 1, Enabled: true},
		{ID: "autoglm-fleet-nodes", Prefix: "fleet/nodes/", Days: 7, NoncurrentDays: 1, Enabled: true},
		{ID: "autoglm-abort-multipart", AbortMultipartDays: 7, Enabled: true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("default rules\n got %+v\nwant %+v", got, want)
	}
}

// The rules ApplyRetention writes are what MinIO gives back; a second call
// replaces them and leaves rules of other owners alone.
func testRetention(t *testing.T, s Store, _ string) {
	ctx := testContext(t)
	bs := openTestStore(t, driverOf(s), "retention-"+driverOf(s), 0)
	if err := EnsureBucket(ctx, bs); err != nil {
		t.Fatal(err)
	}
	if rules, err := LifecycleRules(ctx, bs); err != nil || len(rules) != 0 {
		t.Fatalf("rules of a new bucket: %+v, %v; want none", rules, err)
	}
	foreign := LifecycleRule{ID: "team-tmp", Prefix: "tmp/", Days: 1, Enabled: true}
	if err := bs.(lifecycler).replaceRules(ctx, []LifecycleRule{foreign}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyRetention(ctx, bs, DefaultRetention()); err != nil {
		t.Fatal(err)
	}
	got, err := LifecycleRules(ctx, bs)
	if err != nil {
		t.Fatal(err)
	}
	// The sorted read-back; a store without abort-multipart rules keeps the
	// others (ApplyRetention's fallback).
	want := append(slices.DeleteFunc(DefaultRetention().Rules(), func(r LifecycleRule) bool {
		return r.AbortMultipartDays > 0 && !current.abortMultipart
	}), foreign)
	slices.SortFunc(want, func(a, b LifecycleRule) int { return strings.Compare(a.ID, b.ID) })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rules read back\n got %+v\nwant %+v", got, want)
	}

	// Configured: logs 10 days, checkpoints kept.
	if err := ApplyRetention(ctx, bs, Retention{Days: map[Category]int{Log: 10}, NoncurrentDays: 2}); err != nil {
		t.Fatal(err)
	}
	got, _ = LifecycleRules(ctx, bs)
	want = []LifecycleRule{
		{ID: "autoglm-log", Prefix: "log/", Days: 10, NoncurrentDays: 2, Enabled: true},
		{ID: "autoglm-log-archive", TagKey: TagKind, TagValue: KindLogArc, Days: 10, NoncurrentDays: 2, Enabled: true},
		foreign,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rules after reconfiguring\n got %+v\nwant %+v", got, want)
	}
	if err := ApplyRetention(ctx, bs, Retention{Days: map[Category]int{"nope": 1}}); err == nil {
		t.Error("retention of an unknown category was accepted")
	}
}

func testListPage(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	for i := range 5 {
		create(t, s, fmt.Sprintf("%sk%d", p, i), "x")
	}
	var keys []string
	after := ""
	for pages := 0; ; pages++ {
		page, more, err := ListPage(ctx, s, p, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 || pages > 3 {
			t.Fatalf("page %d has %d keys", pages, len(page))
		}
		for _, in := range page {
			keys = append(keys, strings.TrimPrefix(in.Key, p))
			after = in.Key
		}
		if !more {
			break
		}
	}
	if strings.Join(keys, " ") != "k0 k1 k2 k3 k4" {
		t.Errorf("paged through %q", keys)
	}
}

func testTags(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	tags := map[string]string{TagKind: KindLogArc}
	if _, err := s.Create(ctx, p+"one", strings.NewReader("x"), 1, PutOptions{Tags: tags}); err != nil {
		t.Fatal(err)
	}
	ms := openTestStore(t, driverOf(s), s.Bucket(), minPartSize)
	if _, err := ms.Create(ctx, p+"multi", stream(1, 6<<20), -1, PutOptions{Tags: tags}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{p + "one", p + "multi"} {
		if got := objectTags(t, s, key); got[TagKind] != KindLogArc {
			t.Errorf("tags of %s = %v, want %s=%s", key, got, TagKind, KindLogArc)
		}
	}
}

// objectTags reads an object's tags with the driver's own client.
func objectTags(t *testing.T, s Store, key string) map[string]string {
	t.Helper()
	ctx := testContext(t)
	switch d := s.(type) {
	case *minioStore:
		tags, err := d.core.Client.GetObjectTagging(ctx, d.bucket, key, minio.GetObjectTaggingOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tags.ToMap()
	case *awsStore:
		out, err := d.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(d.bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, tg := range out.TagSet {
			m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		return m
	}
	t.Fatalf("no tags for %T", s)
	return nil
}
