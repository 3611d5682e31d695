// Herald's posts-and-reads mix for k6, the counterpart of `feedload run`:
//
//   k6 run -e TOKENS=/tmp/tokens.json loadtest/k6/feed.js
//   k6 run -e TOKENS=/tmp/tokens.json -e HERALD_ADDR=localhost:7070 -e USERS=1000 -e POST_RATE=20 -e READ_RATE=100 -e DURATION=2m loadtest/k6/feed.js
//
// Herald lets a call act as a user (Follow as follower_id, CreatePost as
// author_id, GetHomeTimeline as user_id) only with that user's bearer
// token. k6 cannot sign tokens, so TOKENS names a JSON file {user: token}
// made beforehand by feedctl with the all-in-one's development key (its
// data dir, --data, is ./.herald by default), for every user the script
// acts as: k6_celeb_0 .. k6_celeb_<CELEBRITIES-1>, then k6_u<CELEBRITIES> ..
// k6_u<USERS-1> (userID in lib.js; USER_PREFIX replaces k6_). For the
// defaults (300 users, 2 celebrities):
//
//   feedctl token --json k6_celeb_0 k6_celeb_1 $(seq -f 'k6_u%.0f' 2 299) > /tmp/tokens.json
//
// Give the path absolute, and --ttl (default 1h) longer than the run. The
// tokens are signed for that data dir's key only. Without TOKENS, setup()
// warns once: the calls will be refused unless Herald runs with -auth=off.
// Past Herald's per-user rate limits (10 posts/s, 100 reads/s by default)
// calls fail with RESOURCE_EXHAUSTED; for heavier runs start Herald with
// higher ones (herald -rate-posts 1000:5000 -rate-reads 10000:50000, or off).
//
// setup() makes the follows of a seeded heavy-tailed graph. Then three
// open-loop scenarios run at constant arrival rates (k6 starts iterations on
// schedule whether or not earlier ones have finished): CreatePost,
// GetHomeTimeline, and a lag probe that posts and polls a follower's home
// timeline until the post appears, recording post_visible_ms.
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { as, checkTokens, conn, followers, graph, ok, settings as s, userID } from './lib.js';

const visible = new Trend('post_visible_ms', true);
const notVisible = new Counter('post_not_visible');

const vus = (rate) => ({ preAllocatedVUs: Math.max(5, Math.ceil(rate / 5)), maxVUs: Math.max(50, rate * 4) });

export const options = {
  setupTimeout: '15m',
  scenarios: {
    posts: { executor: 'constant-arrival-rate', exec: 'post', rate: s.postRate, timeUnit: '1s', duration: s.duration, ...vus(s.postRate) },
    reads: { executor: 'constant-arrival-rate', exec: 'read', rate: s.readRate, timeUnit: '1s', duration: s.duration, ...vus(s.readRate) },
    lag: { executor: 'constant-arrival-rate', exec: 'lag', rate: s.lagRate, timeUnit: '1s', duration: s.duration, ...vus(s.lagRate * 20) },
  },
  thresholds: {
    'grpc_req_duration{op:post}': ['p(99)<250'],
    'grpc_req_duration{op:read}': ['p(99)<100'],
    post_visible_ms: ['p(99)<2000'],
    post_not_visible: ['count==0'],
    checks: ['rate>0.99'],
  },
};

export function setup() {
  checkTokens(s);
  const following = graph(s);
  const c = conn('graph');
  let done = 0;
  let failed = 0;
  const total = following.reduce((n, f) => n + f.length, 0);
  const started = Date.now();
  following.forEach((fs, u) => {
    fs.forEach((v) => {
      const res = c.invoke('feed.v1.GraphService/Follow', { follower_id: userID(s, u), followee_id: userID(s, v) }, as(userID(s, u), { tags: { op: 'follow' } }));
      if (ok(res)) done++;
      else failed++;
      if ((done + failed) % 500 === 0) {
        const rate = (done + failed) / ((Date.now() - started) / 1000);
        console.log(`setup: ${done + failed}/${total} follows, ${rate.toFixed(0)}/s, ETA ${((total - done - failed) / rate).toFixed(0)}s, failed ${failed}`);
      }
    });
  });
  if (failed > 0) throw new Error(`setup: ${failed} of ${total} follows failed`);
  // Let the follow backfills drain before measuring.
  sleep(3);
  return { followers: followers(following) };
}

function author() {
  if (s.celebrities > 0 && Math.random() < 0.05) return Math.floor(Math.random() * s.celebrities);
  return s.celebrities + Math.floor(Math.random() * (s.users - s.celebrities));
}

export function post() {
  const u = userID(s, author());
  const key = `k6-${__VU}-${__ITER}-${Date.now()}`;
  const res = conn('post').invoke('feed.v1.PostService/CreatePost', { author_id: u, text: `k6 post ${key}`, idempotency_key: key }, as(u, { tags: { op: 'post' } }));
  check(res, { 'CreatePost OK': ok });
}

export function read() {
  const u = userID(s, Math.floor(Math.random() * s.users));
  const res = conn('timeline').invoke('feed.v1.TimelineService/GetHomeTimeline', { user_id: u, page_size: s.pageSize }, as(u, { tags: { op: 'read' } }));
  check(res, { 'GetHomeTimeline OK': ok });
}

export function lag(data) {
  let a;
  for (let tries = 0; tries < 20; tries++) {
    a = author();
    if (data.followers[a].length > 0) break;
  }
  const fs = data.followers[a];
  if (fs.length === 0) return;
  const follower = userID(s, fs[Math.floor(Math.random() * fs.length)]);
  const key = `k6-lag-${__VU}-${__ITER}-${Date.now()}`;
  const res = conn('post').invoke('feed.v1.PostService/CreatePost', { author_id: userID(s, a), text: `k6 lag probe ${key}`, idempotency_key: key }, as(userID(s, a), { tags: { op: 'post' } }));
  if (!check(res, { 'CreatePost OK': ok })) return;
  const id = res.message.post.postId;
  const created = Date.parse(res.message.post.createTime);
  let wait = 0.005;
  while (Date.now() - created < s.lagTimeoutMs) {
    const page = conn('timeline').invoke('feed.v1.TimelineService/GetHomeTimeline', { user_id: follower, page_size: 50 }, as(follower, { tags: { op: 'lag_poll' } }));
    if (ok(page) && (page.message.posts || []).some((p) => p.postId === id)) {
      visible.add(Date.now() - created);
      return;
    }
    sleep(wait);
    wait = Math.min(wait * 1.5, 0.1);
  }
  notVisible.add(1);
}
