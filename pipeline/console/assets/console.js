// veil console: live view over WHEP, and playback of recordings.
'use strict';
const csrf = (document.querySelector('meta[name=csrf]') || {}).content || '';
const sessions = [];
// The page's language (Simplified Chinese or English) for what the script says.
const zhUI = document.documentElement.lang === 'zh-CN';
const T = (en, zh) => (zhUI ? zh : en);

async function watch(video) {
  const camera = video.dataset.camera;
  const state = document.querySelector('[data-state-of="' + camera + '"]');
  const say = (s, live) => { if (state) { state.textContent = s; state.classList.toggle('live', !!live); } };
  try {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') say(T('live', '直播中'), true);
      if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') { say(T('reconnecting…', '重新连接中…')); pc.close(); setTimeout(() => watch(video), 3000); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => { if (pc.iceGatheringState === 'complete') ok(); pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') ok(); }; setTimeout(ok, 2000); });
    const r = await fetch('/whep/' + encodeURIComponent(camera), { method: 'POST', headers: { 'Content-Type': 'application/sdp', 'X-CSRF-Token': csrf }, body: pc.localDescription.sdp });
    if (r.status !== 201) { say(T('unavailable', '不可用') + ' (' + r.status + ')'); pc.close(); setTimeout(() => watch(video), 5000); return; }
    sessions.push(r.headers.get('Location'));
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  } catch (e) { say(T('error: ', '错误：') + e); }
}

// stamp puts the camera's name and the time on its live picture, so that
// a screenshot says which camera and when (the time is this screen's
// clock: the picture is live, a fraction of a second behind it).
function stamp(video) {
  const wrap = document.createElement('div');
  wrap.className = 'live-wrap';
  video.parentNode.insertBefore(wrap, video);
  wrap.appendChild(video);
  const s = document.createElement('div');
  s.className = 'stamp';
  s.dataset.stampOf = video.dataset.camera;
  wrap.appendChild(s);
  const p = (n) => String(n).padStart(2, '0');
  const tick = () => {
    const d = new Date();
    s.textContent = video.dataset.camera + '  ' + d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) +
      ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  };
  tick();
  setInterval(tick, 1000);
}

document.querySelectorAll('video[data-camera]').forEach((v) => { stamp(v); watch(v); });

// Today's charts refresh every 30 s without reloading the page (the live
// view and a playing recording go on).
const charts = document.getElementById('charts');
if (charts) {
  setInterval(async () => {
    try {
      const r = await fetch(location.href, { credentials: 'same-origin' });
      if (!r.ok) return;
      const fresh = new DOMParser().parseFromString(await r.text(), 'text/html').getElementById('charts');
      if (fresh) charts.innerHTML = fresh.innerHTML;
    } catch (e) { /* the next tick tries again */ }
  }, 30000);
}
window.addEventListener('pagehide', () => {
  for (const l of sessions) fetch(l, { method: 'DELETE', headers: { 'X-CSRF-Token': csrf }, keepalive: true });
});
// The day's recordings as one timeline: each segment placed at its time
// of day; a click on the day, or a time typed in, plays from that moment;
// a segment that ends goes on into the next; the time of day is shown
// while playing.
const player = document.getElementById('playback');
const segs = [...document.querySelectorAll('[data-play][data-start]')].map((a) => ({ url: a.dataset.play, start: +a.dataset.start }));
segs.sort((a, b) => a.start - b.start);
segs.forEach((s, i) => {
  const gap = i + 1 < segs.length ? segs[i + 1].start - s.start : 0;
  s.end = s.start + (gap > 0 && gap < 600000 ? gap : 60000);
});
let current = -1;
function play(i, offset) {
  if (i < 0 || i >= segs.length) return;
  current = i;
  if (!player.src.endsWith(segs[i].url)) player.src = segs[i].url;
  const go = () => { player.currentTime = Math.max(0, offset / 1000); player.play(); };
  if (player.readyState >= 1 && player.src.endsWith(segs[i].url)) go(); else player.addEventListener('loadedmetadata', go, { once: true });
}
function playAt(t) {
  let i = segs.findIndex((s) => t >= s.start && t < s.end);
  if (i < 0) i = segs.findIndex((s) => s.start > t); // the next recording after a gap
  if (i >= 0) play(i, Math.max(0, t - segs[i].start));
}
const pad = (n) => String(n).padStart(2, '0');
const hms = (t) => { const d = new Date(t); return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); };
const timeline = document.getElementById('timeline');
if (timeline && player) {
  const day0 = +timeline.dataset.dayStart, dayMs = 86400000;
  for (const s of segs) {
    const b = document.createElement('div');
    b.className = 'seg';
    b.style.left = (100 * (s.start - day0) / dayMs) + '%';
    b.style.width = Math.max(0.15, 100 * (s.end - s.start) / dayMs) + '%';
    b.title = hms(s.start) + '–' + hms(s.end);
    timeline.appendChild(b);
  }
  // Gaps between recordings (the camera down, or not recorded), marked.
  segs.forEach((s, i) => {
    const next = segs[i + 1];
    if (!next || next.start - s.end < 5000) return;
    const g = document.createElement('div');
    g.className = 'gap';
    g.style.left = (100 * (s.end - day0) / dayMs) + '%';
    g.style.width = (100 * (next.start - s.end) / dayMs) + '%';
    g.title = T('no recording ', '无录像 ') + hms(s.end) + '–' + hms(next.start);
    timeline.appendChild(g);
  });
  timeline.addEventListener('click', (e) => {
    const r = timeline.getBoundingClientRect();
    playAt(day0 + dayMs * (e.clientX - r.left) / r.width);
  });
  document.getElementById('goto-button').addEventListener('click', () => {
    const [h, m, s] = (document.getElementById('goto').value || '0:0:0').split(':').map(Number);
    playAt(day0 + ((h * 60 + m) * 60 + (s || 0)) * 1000);
  });
  const at = document.getElementById('playing-at');
  const cursor = document.getElementById('timeline-cursor');
  player.addEventListener('timeupdate', () => {
    if (current < 0) return;
    const t = segs[current].start + player.currentTime * 1000;
    at.textContent = T('playing ', '正在播放 ') + hms(t);
    at.dataset.t = String(Math.round(t));
    cursor.style.left = (100 * (t - day0) / dayMs) + '%';
  });
  player.addEventListener('ended', () => play(current + 1, 0));
  // The strip of the day's pictures: a click plays from that picture.
  document.querySelectorAll('[data-goto]').forEach((a) => a.addEventListener('click', (e) => {
    e.preventDefault();
    playAt(+a.dataset.goto);
  }));
}
document.querySelectorAll('[data-play]').forEach((a) => a.addEventListener('click', (e) => {
  e.preventDefault();
  const i = segs.findIndex((s) => s.url === a.dataset.play);
  if (i >= 0) { play(i, 0); return; }
  player.src = a.dataset.play; player.play();
}));
