package storage

import (
	"context"
	"fmt"
	"sort"
)

// MaxListPage is the most keys one ListPage returns (S3's own limit).
const MaxListPage = 1000

// pager is what a driver does for ListPage.
type pager interface {
	listPage(ctx context.Context, prefix, after string, limit int) ([]Info, bool, error)
}

// ListPage returns up to limit objects under prefix whose keys sort after
// the key after ("" starts at the beginning), and whether more follow. A
// caller that must walk a large prefix without holding it all (the log
// archive does) passes the last key of one page as after of the next.
func ListPage(ctx context.Context, s Store, prefix, after string, limit int) (_ []Info, more bool, _ error) {
	if limit <= 0 || limit > MaxListPage {
		limit = MaxListPage
	}
	if p, ok := s.(pager); ok {
		page, more, err := p.listPage(ctx, prefix, after, limit)
		if err != nil {
			return nil, false, err
		}
		sort.Slice(page, func(i, j int) bool { return page[i].Key < page[j].Key })
		return page, more, nil
	}
	all, err := s.List(ctx, prefix)
	if err != nil {
		return nil, false, fmt.Errorf("storage: list %s: %w", prefix, err)
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].Key > after })
	all = all[i:]
	if len(all) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
}
