package task

import "testing"

// Names and revisions may hold "-", so the workflow ID must not join them
// with it: a@b-c and a-b@c are two mirrors.
func TestMirrorWorkflowIDsDoNotCollide(t *testing.T) {
	a, b := MirrorWorkflowID("a", "b-c"), MirrorWorkflowID("a-b", "c")
	if a == b {
		t.Fatalf("a@b-c and a-b@c share the mirror workflow ID %q", a)
	}
	for _, in := range []MirrorInput{{Name: "a@b", Repo: "o/r", Revision: "c"}, {Name: "a", Repo: "o/r", Revision: "b@c"}} {
		if in.Validate() == nil {
			t.Fatalf("%+v validates: an @ in a name or revision would make IDs ambiguous again", in)
		}
	}
}

// An upstream file named like the cache's record is refused.
func TestCacheMetaIsNoModelFileName(t *testing.T) {
	if err := CheckModelFileName(CacheMetaName); TypeOf(err) != InvalidInput {
		t.Fatalf("CheckModelFileName(%q) = %v; want InvalidInput", CacheMetaName, err)
	}
	if err := CheckModelFileName("sub/" + CacheMetaName); err != nil {
		t.Fatalf("a nested file of that name is no record's: %v", err)
	}
}
