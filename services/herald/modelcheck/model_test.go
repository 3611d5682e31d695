package modelcheck

import (
	"slices"
	"testing"
)

func TestModelHome(t *testing.T) {
	m := NewModel(3)
	m.Follow("b", "a")
	m.Follow("b", "c")
	m.AddPost(10, "a")
	m.AddPost(30, "c")
	m.AddPost(20, "b") // b's own post counts
	m.AddPost(40, "d") // b does not follow d
	m.AddPost(50, "a")
	m.AddPost(60, "a")
	m.DeletePost(60)
	tests := []struct {
		user string
		want []uint64
	}{
		{"b", []uint64{50, 30, 20}}, // newest first, capped at 3, deleted 60 gone
		{"a", []uint64{50, 10}},
		{"z", nil},
	}
	for _, tt := range tests {
		if got := m.Home(tt.user); !slices.Equal(got, tt.want) {
			t.Errorf("Home(%s) = %v; want %v", tt.user, got, tt.want)
		}
	}
	m.Unfollow("b", "a")
	if got, want := m.Home("b"), []uint64{30, 20}; !slices.Equal(got, want) {
		t.Errorf("Home(b) after unfollowing a = %v; want %v", got, want)
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name      string
		got, want []uint64
		diff      Diff
		equal     bool
	}{
		{"equal", []uint64{3, 2, 1}, []uint64{3, 2, 1}, Diff{}, true},
		{"missing", []uint64{3, 1}, []uint64{3, 2, 1}, Diff{Missing: []uint64{2}}, false},
		{"extra", []uint64{4, 3}, []uint64{3}, Diff{Extra: []uint64{4}}, false},
		{"duplicate", []uint64{3, 3, 2}, []uint64{3, 2}, Diff{Duplicates: []uint64{3}}, false},
		{"order", []uint64{2, 3}, []uint64{3, 2}, Diff{Order: true}, false},
	}
	for _, tt := range tests {
		d, ok := Compare(tt.got, tt.want)
		if ok != tt.equal || !slices.Equal(d.Missing, tt.diff.Missing) || !slices.Equal(d.Extra, tt.diff.Extra) ||
			!slices.Equal(d.Duplicates, tt.diff.Duplicates) || d.Order != tt.diff.Order {
			t.Errorf("%s: Compare(%v, %v) = %+v, %v; want %+v, %v", tt.name, tt.got, tt.want, d, ok, tt.diff, tt.equal)
		}
	}
}
