package cassandrastore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/feed"
)

// The rows TestDiskPerRow writes: posts of a typical short text, and follow edges.
const (
	diskPosts   = 2000
	diskAuthors = 20
	diskEdges   = 2000
	diskTextLen = 80
)

// diskWords make the posts' texts: words drawn at random, so that the texts compress about
// as well as prose does (identical texts would compress to almost nothing, and random bytes
// not at all).
var diskWords = strings.Fields(`the a of to and in is it you that he was for on are with as I his they be at one
	have this from or had by hot word but what some we can out other were all there when up use
	your how said an each she which do their time if will way about many then them write would
	like so these her long make thing see him two has look more day could go come did number
	sound no most people my over know water than call first who may down side been now find
	post timeline follow read news today great new love thanks happy game team week night`)

// diskText returns post i's text, diskTextLen characters of words.
func diskText(i int) string {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	var b strings.Builder
	for b.Len() < diskTextLen {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(diskWords[r.IntN(len(diskWords))])
	}
	return b.String()[:diskTextLen]
}

// TestDiskPerRow measures what a post and a follow edge cost on Cassandra's disk: it writes
// diskPosts posts and diskEdges follows into a fresh keyspace through the store, flushes the
// keyspace (nodetool, through deploy/local/cassandra.sh), and divides each table's live
// SSTable bytes (nodetool tablestats) by the rows. The figures, in docs/benchmarks.md, feed
// the sizing in docs/operations.md; the bounds only catch a store that writes far more
// than it should.
func TestDiskPerRow(t *testing.T) {
	ks := freshKeyspace()
	s := openStore(t, cassandrastore.Config{Keyspace: ks})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	base := time.Now().Add(-time.Hour)
	var g errgroup.Group
	g.SetLimit(8)
	for i := range diskPosts {
		g.Go(func() error {
			p := feed.Post{ID: feed.PostID(1_000_000 + i), Author: fmt.Sprintf("author%02d", i%diskAuthors), Text: diskText(i), Created: base.Add(time.Duration(i) * time.Second)}
			_, _, err := s.CreatePost(ctx, p, fmt.Sprintf("key-%d", i))
			return err
		})
	}
	for i := range diskEdges {
		g.Go(func() error {
			// 200 users each following 10 others: every edge is two rows (followers and
			// following).
			_, err := s.Follow(ctx, fmt.Sprintf("user%03d", i/10), fmt.Sprintf("user%03d", (i/10+1+i%10)%200))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	nodetool(t, "flush", ks)
	out := nodetool(t, "tablestats", "-F", "json", ks)
	// The keyspaces by name, beside numbers such as total_number_of_tables.
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &top); err != nil {
		t.Fatalf("nodetool tablestats -F json %s: %v\n%s", ks, err, out)
	}
	var stats struct {
		Tables map[string]struct {
			SpaceUsedLive string `json:"space_used_live"`
		} `json:"tables"`
	}
	if err := json.Unmarshal(top[ks], &stats); err != nil || len(stats.Tables) == 0 {
		t.Fatalf("nodetool tablestats -F json %s: keyspace %s: %v, %d tables\n%s", ks, ks, err, len(stats.Tables), out)
	}
	live := map[string]int64{}
	for table, st := range stats.Tables {
		var n int64
		fmt.Sscan(st.SpaceUsedLive, &n)
		live[table] = n
		t.Logf("%s.%s: %d bytes live", ks, table, n)
	}
	// The outbox row a post leaves until its event is published is not counted: the post
	// service clears it within a second of the post, and this test publishes nothing.
	postBytes := live["posts_by_id"] + live["posts_by_author"] + live["author_buckets"] + live["idempotency"]
	edgeBytes := live["followers"] + live["following"]
	perPost, perEdge := float64(postBytes)/diskPosts, float64(edgeBytes)/diskEdges
	t.Logf("disk per post %.0f B (posts_by_id %d, posts_by_author %d, author_buckets %d, idempotency %d; outbox %d not counted), for %d posts of %d characters; per follow edge %.0f B (followers %d, following %d), for %d edges",
		perPost, live["posts_by_id"], live["posts_by_author"], live["author_buckets"], live["idempotency"], live["outbox"], diskPosts, diskTextLen, perEdge, live["followers"], live["following"], diskEdges)
	if perPost <= 0 || perPost > 4096 {
		t.Errorf("disk per post = %.0f B; want between 0 and 4 KiB for an %d-character post", perPost, diskTextLen)
	}
	if perEdge <= 0 || perEdge > 1024 {
		t.Errorf("disk per follow edge = %.0f B; want between 0 and 1 KiB", perEdge)
	}
}

// nodetool runs Cassandra's nodetool on the local test server through deploy/local.
func nodetool(t *testing.T, args ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "local", "cassandra.sh")
	out, err := exec.Command(script, append([]string{"nodetool"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/local/cassandra.sh nodetool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
