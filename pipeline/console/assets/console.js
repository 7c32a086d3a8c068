// veil console: live view over WHEP, and playback of recordings.
'use strict';
const csrf = (document.querySelector('meta[name=csrf]') || {}).content || '';
const sessions = [];

async function watch(video) {
  const camera = video.dataset.camera;
  const state = document.querySelector('[data-state-of="' + camera + '"]');
  const say = (s, live) => { if (state) { state.textContent = s; state.classList.toggle('live', !!live); } };
  try {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') say('live', true);
      if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') { say('reconnecting…'); pc.close(); setTimeout(() => watch(video), 3000); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => { if (pc.iceGatheringState === 'complete') ok(); pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') ok(); }; setTimeout(ok, 2000); });
    const r = await fetch('/whep/' + encodeURIComponent(camera), { method: 'POST', headers: { 'Content-Type': 'application/sdp', 'X-CSRF-Token': csrf }, body: pc.localDescription.sdp });
    if (r.status !== 201) { say('unavailable (' + r.status + ')'); pc.close(); setTimeout(() => watch(video), 5000); return; }
    sessions.push(r.headers.get('Location'));
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  } catch (e) { say('error: ' + e); }
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
document.querySelectorAll('[data-play]').forEach((a) => a.addEventListener('click', (e) => {
  e.preventDefault();
  const v = document.getElementById('playback');
  v.src = a.dataset.play; v.play();
}));
