package tracing

import (
	"context"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// DefaultOrigins is how many recent posts' trace contexts an Origins keeps.
const DefaultOrigins = 10000

// Origins remembers the trace context in which each recent post reached
// this process (the timeline service's tail of post.created), so that the
// post's first read here can end its trace: FirstReads adds a span to the
// post's trace, linked to the read's. It keeps the newest DefaultOrigins
// posts, about 1 MiB, and nothing while tracing is off.
type Origins struct {
	posts *lru.Cache[uint64, origin]
}

type origin struct {
	sc      trace.SpanContext
	created time.Time
}

// NewOrigins returns an empty Origins.
func NewOrigins() *Origins {
	c, _ := lru.New[uint64, origin](DefaultOrigins) // fails only for a size under 1
	return &Origins{posts: c}
}

// Remember notes that post, created at created, arrived in ctx's trace.
func (o *Origins) Remember(ctx context.Context, post uint64, created time.Time) {
	if o == nil || !Enabled() {
		return
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && sc.IsSampled() {
		o.posts.Add(post, origin{sc: sc, created: created})
	}
}

// FirstReads ends the traces of the posts that ctx's read is the first
// here to return: for each, a span "first read" in the post's trace, the
// child of the span that remembered it and linked to the read's span, with
// the post's age at the read. It returns links to those traces, for the
// read's own span.
func (o *Origins) FirstReads(ctx context.Context, posts []uint64) []trace.Link {
	if o == nil || !Enabled() || o.posts.Len() == 0 {
		return nil
	}
	read := trace.LinkFromContext(ctx, attribute.String("herald.link", "read"))
	now := time.Now()
	var links []trace.Link
	for _, id := range posts {
		org, ok := o.posts.Peek(id)
		if !ok || !o.posts.Remove(id) {
			continue // not remembered, or another read took it first
		}
		pctx := trace.ContextWithRemoteSpanContext(context.Background(), org.sc)
		_, span := Tracer().Start(pctx, "first read", trace.WithLinks(read), trace.WithTimestamp(now),
			trace.WithAttributes(attribute.Int64("herald.post.id", int64(id)),
				attribute.Int64("herald.post.age_ms", now.Sub(org.created).Milliseconds())))
		span.End(trace.WithTimestamp(now))
		links = append(links, trace.Link{SpanContext: org.sc, Attributes: []attribute.KeyValue{
			attribute.String("herald.link", "post created"), attribute.Int64("herald.post.id", int64(id))}})
	}
	return links
}
