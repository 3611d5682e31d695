// Herald's console: a small client of the HTTP/JSON API (/v1/...), and a
// view of the fan-out (/console/fanout). No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { user: null, token: null, stream: null, seen: new Set(), watch: null };

// api calls the HTTP/JSON API as the signed-in user; an error carries the
// server's message, which names the field.
async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : {};
  if (!resp.ok) {
    const retry = resp.headers.get("Retry-After");
    throw new Error(`${resp.status}: ${data.message || resp.statusText}${retry ? ` (retry in ${retry} s)` : ""}`);
  }
  return data;
}

function say(id, msg, error) {
  const el = $(id);
  el.textContent = msg;
  el.classList.toggle("error", !!error);
}

async function loadPolicy() {
  try {
    const c = await api("GET", "/console/config");
    let lag = "no fan-out yet";
    if (c.fanout_lag) lag = `fan-out lag p50 ${c.fanout_lag.p50_ms.toFixed(1)} ms, p99 ${c.fanout_lag.p99_ms.toFixed(1)} ms`;
    $("policy").textContent = `strategy ${c.strategy}, celebrity threshold ${c.celebrity_threshold} followers; ${lag}`;
    if (!c.dev_sign_in) say("signin-status", "This deployment has no development key: paste a token.");
  } catch (e) {
    $("policy").textContent = "policy unavailable: " + e.message;
  }
}

function signedIn(user, token) {
  state.user = user;
  state.token = token;
  sessionStorage.setItem("herald-session", JSON.stringify({ user, token }));
  $("me").textContent = user;
  $("signin").hidden = true;
  for (const id of ["client", "home"]) $(id).hidden = false;
  loadHome();
  loadFollowing();
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("signin-user").value.trim();
  try {
    const r = await api("POST", "/console/token", { user_id: user });
    signedIn(r.user_id, r.token);
  } catch (e) {
    say("signin-status", e.message, true);
  }
});

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signedIn($("token-user").value.trim(), $("token-value").value.trim());
});

$("signout").addEventListener("click", () => {
  sessionStorage.removeItem("herald-session");
  location.reload();
});

$("post-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("POST", "/v1/posts", { author_id: state.user, text: $("post-text").value });
    $("post-text").value = "";
    say("client-status", `posted ${r.post.post_id}`);
    watchFanout(r.post.post_id);
  } catch (e) {
    say("client-status", e.message, true);
  }
});

$("follow-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const other = $("follow-user").value.trim();
  const op = ev.submitter ? ev.submitter.value : "follow";
  try {
    if (op === "follow") {
      await api("POST", `/v1/users/${state.user}/following`, { followee_id: other });
    } else {
      await api("DELETE", `/v1/users/${state.user}/following/${other}`);
    }
    say("client-status", `${op === "follow" ? "following" : "no longer following"} ${other}`);
    loadFollowing();
    loadHome();
  } catch (e) {
    say("client-status", e.message, true);
  }
});

async function loadFollowing() {
  try {
    const r = await api("GET", `/v1/users/${state.user}/following?page_size=100`);
    $("following").textContent = r.user_ids.length ? r.user_ids.join(", ") : "nobody yet";
  } catch (e) {
    $("following").textContent = e.message;
  }
}

function postItem(p, fresh) {
  const li = document.createElement("li");
  li.dataset.postId = p.post_id;
  if (fresh) li.className = "fresh";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = p.author_id;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = new Date(p.create_time).toLocaleTimeString();
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = p.text;
  li.append(who, when, text);
  return li;
}

function show(p, fresh) {
  if (state.seen.has(p.post_id)) return;
  state.seen.add(p.post_id);
  const list = $("timeline");
  // Newest first: a post ID is time-sortable.
  const item = postItem(p, fresh);
  for (const li of list.children) {
    if (BigInt(li.dataset.postId) < BigInt(p.post_id)) {
      list.insertBefore(item, li);
      return;
    }
  }
  list.append(item);
}

async function loadHome() {
  try {
    const r = await api("GET", `/v1/users/${state.user}/home?page_size=50`);
    for (const p of r.posts) show(p, false);
  } catch (e) {
    say("client-status", e.message, true);
  }
  if (!state.stream) stream();
}

// stream reads GET /v1/users/{me}/home:stream, newline-delimited JSON, and
// reconnects after a pause if it ends.
async function stream() {
  const ctl = new AbortController();
  state.stream = ctl;
  const pill = $("stream-state");
  try {
    const resp = await fetch(`/v1/users/${state.user}/home:stream`, {
      headers: { "Authorization": "Bearer " + state.token, "Accept": "application/json" }, signal: ctl.signal,
    });
    if (!resp.ok) throw new Error(`${resp.status}`);
    pill.textContent = "live";
    pill.classList.add("live");
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.result && msg.result.post) show(msg.result.post, true);
        if (msg.error) throw new Error(msg.error.message);
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    pill.textContent = "reconnecting: " + e.message;
  }
  pill.classList.remove("live");
  state.stream = null;
  setTimeout(() => { if (state.user) stream(); }, 2000);
}

// watchFanout polls how many followers' timelines hold the post, for 15 s
// or until every active timeline does, and draws the arrivals.
function watchFanout(postId) {
  if (state.watch) clearInterval(state.watch.timer);
  const w = { postId, points: [], started: performance.now(), last: -1 };
  state.watch = w;
  $("fanout").hidden = false;
  const tick = async () => {
    let f;
    try {
      f = await api("GET", `/console/fanout?post_id=${postId}`);
    } catch (e) {
      $("fanout-summary").textContent = e.message;
      return;
    }
    if (f.delivered !== w.last) {
      w.points.push({ ms: Math.max(f.age_ms, 0), delivered: f.delivered });
      w.last = f.delivered;
    }
    summarize(f);
    draw(w, f);
    const done = f.pulled || (f.active_timelines > 0 && f.delivered >= f.active_timelines) || f.followers === 0;
    if (done || performance.now() - w.started > 15000) clearInterval(w.timer);
  };
  w.timer = setInterval(tick, 150);
  tick();
}

function summarize(f) {
  const how = f.pulled
    ? `<span class="pulled">pulled</span>: ${f.author_id} has ${f.followers} followers (threshold ${f.threshold}), so readers merge the post in at read time`
    : `<span class="pushed">pushed</span> into followers' timelines (${f.strategy}, threshold ${f.threshold})`;
  const lag = f.fanout_lag ? `fan-out lag p50 <b>${f.fanout_lag.p50_ms.toFixed(1)}</b> ms, p99 <b>${f.fanout_lag.p99_ms.toFixed(1)}</b> ms` : "";
  $("fanout-summary").innerHTML =
    `<span>post <b>${f.post_id}</b></span>` +
    `<span><b id="delivered">${f.delivered}</b> of <b>${f.active_timelines}</b> active timelines hold it (${f.followers} followers)</span>` +
    `<span>${how}</span><span>${lag}</span>`;
}

// draw plots the delivered count over the post's age: the lag CDF filling in.
function draw(w, f) {
  const cv = $("cdf");
  const g = cv.getContext("2d");
  const W = cv.width, H = cv.height, L = 48, B = 28, T = 12, R = 12;
  g.clearRect(0, 0, W, H);
  const total = Math.max(f.active_timelines, 1);
  const maxMs = Math.max(100, ...w.points.map((p) => p.ms)) * 1.1;
  const x = (ms) => L + (W - L - R) * ms / maxMs;
  const y = (n) => H - B - (H - B - T) * n / total;
  g.strokeStyle = "#9aa5b4";
  g.fillStyle = "#5f6b7a";
  g.font = "11px system-ui";
  g.beginPath();
  g.moveTo(L, T); g.lineTo(L, H - B); g.lineTo(W - R, H - B);
  g.stroke();
  g.fillText(`${total}`, 8, T + 8);
  g.fillText("0", 30, H - B);
  g.fillText("0 ms", L, H - 8);
  g.fillText(`${Math.round(maxMs)} ms since the post`, W - R - 150, H - 8);
  if (f.pulled) {
    g.fillText("pulled at read time: no timeline writes", L + 20, T + 30);
    return;
  }
  g.strokeStyle = "#2f6fde";
  g.lineWidth = 2;
  g.beginPath();
  g.moveTo(x(0), y(0));
  let prev = 0;
  for (const p of w.points) {
    g.lineTo(x(p.ms), y(prev));
    g.lineTo(x(p.ms), y(p.delivered));
    prev = p.delivered;
  }
  g.lineTo(x(maxMs / 1.1), y(prev));
  g.stroke();
  g.lineWidth = 1;
}

loadPolicy();
setInterval(loadPolicy, 5000);
const saved = sessionStorage.getItem("herald-session");
if (saved) {
  const s = JSON.parse(saved);
  signedIn(s.user, s.token);
}
