// Shared pieces of Herald's k6 scripts: settings from the environment, a
// seeded graph of the same shape feedload builds, the gRPC calls, and the
// users' tokens.
//
// The graph has the same parameters as feedload's (users, mean follows,
// celebrities, celebrity reach, zipf, seed) but not the same edges: k6 and Go
// use different random generators.
import grpc from 'k6/net/grpc';

export const env = (name, def) => (__ENV[name] !== undefined && __ENV[name] !== '' ? __ENV[name] : def);
export const num = (name, def) => Number(env(name, def));

export const settings = {
  addr: env('HERALD_ADDR', 'localhost:7070'),
  // A cluster serves each API on its own instances: HERALD_POST_ADDR,
  // HERALD_GRAPH_ADDR and HERALD_TIMELINE_ADDR point at one of each (the
  // compose cluster: localhost:7171, 7181, 7201). Each defaults to
  // HERALD_ADDR, where the all-in-one serves all three.
  addrs: {
    post: env('HERALD_POST_ADDR', env('HERALD_ADDR', 'localhost:7070')),
    graph: env('HERALD_GRAPH_ADDR', env('HERALD_ADDR', 'localhost:7070')),
    timeline: env('HERALD_TIMELINE_ADDR', env('HERALD_ADDR', 'localhost:7070')),
  },
  users: num('USERS', 300),
  meanFollows: num('MEAN_FOLLOWS', 10),
  celebrities: num('CELEBRITIES', 2),
  celebrityReach: num('CELEBRITY_REACH', 0.3),
  zipf: num('ZIPF', 1.1),
  seed: num('SEED', 1),
  prefix: env('USER_PREFIX', 'k6_'),
  postRate: num('POST_RATE', 10),
  readRate: num('READ_RATE', 50),
  lagRate: num('LAG_RATE', 2),
  duration: env('DURATION', '1m'),
  pageSize: num('PAGE_SIZE', 20),
  lagTimeoutMs: num('LAG_TIMEOUT_MS', 10000),
};

// mulberry32: a small seeded generator, so every run builds the same graph.
export function rng(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function userID(s, i) {
  return i < s.celebrities ? `${s.prefix}celeb_${i}` : `${s.prefix}u${i}`;
}

// graph returns following[u] (the users u follows) for a heavy-tailed
// graph: celebrities followed by celebrityReach of users, and ordinary
// accounts chosen with Zipf weights over a random popularity order.
export function graph(s) {
  const next = rng(s.seed);
  const n = s.users;
  const c = s.celebrities;
  const ordinary = n - c;
  const order = [];
  for (let i = 0; i < ordinary; i++) order.push(c + i);
  for (let i = ordinary - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const cum = [];
  let total = 0;
  for (let k = 0; k < ordinary; k++) {
    total += 1 / Math.pow(k + 1, s.zipf);
    cum.push(total);
  }
  const pick = () => {
    const x = next() * total;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return order[lo];
  };
  const p = 1 / (s.meanFollows + 1);
  const following = [];
  for (let u = 0; u < n; u++) {
    const seen = new Set();
    for (let ci = 0; ci < c; ci++) {
      if (ci !== u && next() < s.celebrityReach) seen.add(ci);
    }
    const want = Math.min(Math.floor(Math.log(1 - next()) / Math.log(1 - p)), ordinary - 1);
    let got = 0;
    for (let tries = 0; got < want && tries < 50 * want + 100; tries++) {
      const v = pick();
      if (v === u || seen.has(v)) continue;
      seen.add(v);
      got++;
    }
    following.push([...seen]);
  }
  return following;
}

export function followers(following) {
  const out = following.map(() => []);
  following.forEach((fs, u) => fs.forEach((v) => out[v].push(u)));
  return out;
}

// conn returns this VU's gRPC client of service ('post', 'graph' or
// 'timeline'), connected on first use. Herald serves reflection, so no
// .proto files are needed.
const clients = {};
export function conn(service) {
  if (!clients[service]) {
    const c = new grpc.Client();
    c.connect(settings.addrs[service], { plaintext: true, reflect: true, timeout: '5s' });
    clients[service] = c;
  }
  return clients[service];
}

export const ok = (res) => res && res.status === grpc.StatusOK;

// tokens maps user IDs to bearer tokens, from the JSON file TOKENS names
// (an absolute path: k6 resolves a relative one against this script's
// directory). Herald lets a call act as a user only with that user's token,
// and k6 cannot sign the development key's Ed25519 tokens, so feedctl makes
// the file, for exactly the IDs userID gives:
//
//   feedctl token --json --ttl 2h k6_celeb_0 k6_celeb_1 $(seq -f 'k6_u%.0f' 2 299) > /tmp/tokens.json
//
// open() reads files only in the init context, so this runs as the module
// loads. null without TOKENS: calls carry no token.
export const tokens = __ENV.TOKENS ? JSON.parse(open(__ENV.TOKENS)) : null;

// as returns params for a call that acts as user: the user's token in the
// authorization metadata, if tokens has one.
export function as(user, params = {}) {
  const t = tokens && tokens[user];
  if (!t) return params;
  return { ...params, metadata: { ...params.metadata, authorization: `Bearer ${t}` } };
}

// checkTokens warns, once, when calls will be refused for want of a token:
// TOKENS is not set, or lacks some of the graph's users.
export function checkTokens(s) {
  const make = `feedctl token --json ${tokenUsers(s)} > /tmp/tokens.json, then -e TOKENS=/tmp/tokens.json`;
  if (!tokens) {
    console.warn(`TOKENS is not set: follows, posts and home-timeline reads carry no token, and Herald refuses them (UNAUTHENTICATED) unless it runs with -auth=off. Make the file with: ${make}`);
    return;
  }
  const missing = [];
  for (let i = 0; i < s.users; i++) {
    if (!tokens[userID(s, i)]) missing.push(userID(s, i));
  }
  if (missing.length > 0) {
    console.warn(`${__ENV.TOKENS} has no token for ${missing.length} of the ${s.users} users (first ${missing[0]}); their calls will be refused. Make it with: ${make}`);
  }
}

// tokenUsers is the feedctl argument list of every userID of s.
function tokenUsers(s) {
  const c = Math.min(s.celebrities, s.users);
  const celebs = [];
  for (let i = 0; i < c; i++) celebs.push(userID(s, i));
  const rest = c < s.users ? ` $(seq -f '${s.prefix}u%.0f' ${c} ${s.users - 1})` : '';
  return celebs.join(' ') + rest;
}
