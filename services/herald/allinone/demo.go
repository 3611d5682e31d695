package allinone

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/store"
)

// The demo's shape (herald -demo): enough users that a post by a popular
// one visibly fills timelines, one celebrity past the threshold, so the
// console shows push and pull side by side.
const (
	DemoUsers          = 300
	DemoCelebrity      = "demo_celebrity"
	DemoCelebrityFans  = 250
	DemoThreshold      = 100 // the demo's celebrity threshold, unless one is set
	demoMinFollowing   = 2
	demoMaxFollowing   = 12
	// demoTail is the popularity exponent: user i is followed with
	// weight 1/(i+1)^demoTail, so the most followed user has about 90
	// followers, under DemoThreshold, and the least about 3.
	demoTail = 0.6
	demoPopularPosters = 20
)

// DemoUser names the demo's i-th user.
func DemoUser(i int) string { return fmt.Sprintf("demo_u%03d", i) }

// seedDemo fills a fresh all-in-one with the demo: DemoUsers users who
// each follow 2 to 12 others, drawn with a heavy tail (user i is chosen
// with weight 1/(i+1)^demoTail), and DemoCelebrity, followed by DemoCelebrityFans
// of them. The edges go straight into the graph store; then every user
// reads their home timeline once, through the API, so that each has a
// cached timeline the fan-out writes to, and the twenty most followed
// users and the celebrity post. A data dir that already holds the
// celebrity's followers is left as it is.
func seedDemo(ctx context.Context, g store.Graph, addr string, signer *auth.Signer, log *slog.Logger) error {
	if n, err := g.FollowerCount(ctx, DemoCelebrity); err != nil {
		return err
	} else if n > 0 {
		log.Info("demo: already seeded", "celebrity", DemoCelebrity, "followers", n)
		return nil
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(1, 2)) // the same graph every time
	weights := make([]float64, DemoUsers)
	var total float64
	for i := range weights {
		weights[i] = 1 / math.Pow(float64(i+1), demoTail)
		total += weights[i]
	}
	pick := func() int {
		x := rng.Float64() * total
		for i, w := range weights {
			if x -= w; x < 0 {
				return i
			}
		}
		return DemoUsers - 1
	}
	edges := 0
	for u := range DemoUsers {
		k := demoMinFollowing + rng.IntN(demoMaxFollowing-demoMinFollowing+1)
		for range k {
			v := pick()
			if v == u {
				continue
			}
			changed, err := g.Follow(ctx, DemoUser(u), DemoUser(v))
			if err != nil {
				return err
			}
			if changed {
				edges++
			}
		}
	}
	for _, u := range rng.Perm(DemoUsers)[:DemoCelebrityFans] {
		if _, err := g.Follow(ctx, DemoUser(u), DemoCelebrity); err != nil {
			return err
		}
		edges++
	}

	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, auth.ActAsNamedUser(signer)...)...)
	if err != nil {
		return err
	}
	defer conn.Close()
	tl, posts := feedv1.NewTimelineServiceClient(conn), feedv1.NewPostServiceClient(conn)
	for u := range DemoUsers {
		if _, err := tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: DemoUser(u), PageSize: 1}); err != nil {
			return fmt.Errorf("demo: read %s: %w", DemoUser(u), err)
		}
	}
	authors := []string{DemoCelebrity}
	for i := range demoPopularPosters {
		authors = append(authors, DemoUser(i))
	}
	for _, a := range authors {
		if _, err := posts.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: a, Text: "hello from " + a + ", a demo post", IdempotencyKey: "demo-" + a}); err != nil {
			return fmt.Errorf("demo: post as %s: %w", a, err)
		}
	}
	log.Info("demo: seeded", "users", DemoUsers+1, "follows", edges, "celebrity", DemoCelebrity,
		"celebrity_followers", DemoCelebrityFans, "posts", len(authors), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
