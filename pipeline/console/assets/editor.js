// veil console: the line and zone editor, for admins, drawn on the
// camera's live (obscured) picture. It writes the keys of veil.yaml
// (cameras[].lines, cameras[].zones), which the server checks as it
// checks the file at start.
'use strict';
(function () {
  const box = document.getElementById('editor');
  if (!box) return;
  const camera = box.dataset.camera;
  const csrf = (document.querySelector('meta[name=csrf]') || {}).content || '';
  const T = (en, zh) => (document.documentElement.lang === 'zh-CN' ? zh : en);
  const video = document.querySelector('video[data-camera="' + CSS.escape(camera) + '"]');
  const status = document.getElementById('editor-status');
  const items = document.getElementById('editor-items');
  const say = (s, bad) => { status.textContent = s; status.classList.toggle('error', !!bad); };
  let lines = [], zones = [], tool = null, draft = [], drag = null, refused = '';

  const canvas = document.createElement('canvas');
  canvas.id = 'editor-canvas';
  canvas.style.cssText = 'position:absolute;left:0;top:0;width:100%;height:100%;display:none;cursor:crosshair;touch-action:none';
  // The canvas lies over the video, in whatever holds it when the editor
  // opens (console.js wraps the video to stamp it, after this runs).
  function mount() {
    const holder = video.parentNode;
    if (canvas.parentNode === holder) return;
    if (getComputedStyle(holder).position === 'static') holder.style.position = 'relative';
    holder.appendChild(canvas);
  }

  // The picture's place in the video element (object-fit: contain): the
  // coordinates are fractions of the picture, not of the element.
  function rect() {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    const vw = video.videoWidth || 16, vh = video.videoHeight || 9;
    const s = Math.min(w / vw, h / vh);
    return { x: (w - vw * s) / 2, y: (h - vh * s) / 2, w: vw * s, h: vh * s };
  }
  const px = (p) => { const r = rect(); return [r.x + p[0] * r.w, r.y + p[1] * r.h]; };
  const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000;
  function norm(ev) {
    const b = canvas.getBoundingClientRect(), r = rect();
    return [round((ev.clientX - b.left - r.x) / r.w), round((ev.clientY - b.top - r.y) / r.h)];
  }
  const near = (p, q) => Math.hypot(p[0] - q[0], p[1] - q[1]) < 10;
  const unique = (prefix, taken) => { let i = 1; while (taken.includes(prefix + i)) i++; return prefix + i; };
  const arrows = { up: [0, -1], down: [0, 1], left: [-1, 0], right: [1, 0] };
  // arrow is the way a line counts as entering, on screen. The older
  // names: left_to_right is towards the line's side with larger x (larger
  // y for a flat line), right_to_left the other way.
  function arrow(l) {
    if (arrows[l.in]) return arrows[l.in];
    const dx = l.to[0] - l.from[0], dy = l.to[1] - l.from[1], len = Math.hypot(dx, dy) || 1;
    let n = [Math.abs(dy) / len, (dy > 0 ? -dx : dx) / len];
    if (n[0] === 0) n = [0, 1];
    return l.in === 'right_to_left' ? [-n[0], -n[1]] : n;
  }

  function draw() {
    mount();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = canvas.clientWidth * dpr; canvas.height = canvas.clientHeight * dpr;
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.lineWidth = 3; g.font = 'bold 13px system-ui, sans-serif';
    for (const z of zones) {
      g.beginPath(); z.polygon.forEach((p, i) => { const [x, y] = px(p); if (i) g.lineTo(x, y); else g.moveTo(x, y); }); g.closePath();
      g.fillStyle = '#6b4fbb44'; g.fill(); g.strokeStyle = '#6b4fbb'; g.stroke();
      const [x, y] = px(z.polygon[0]); g.fillStyle = '#fff'; g.fillText(z.id, x + 6, y + 16);
    }
    for (const l of lines) {
      const [x1, y1] = px(l.from), [x2, y2] = px(l.to);
      g.strokeStyle = '#2f6fdf'; g.beginPath(); g.moveTo(x1, y1); g.lineTo(x2, y2); g.stroke();
      const a = arrow(l), mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
      if (a) { // the way that counts as entering
        g.strokeStyle = '#17803d'; g.beginPath(); g.moveTo(mx, my); g.lineTo(mx + a[0] * 28, my + a[1] * 28); g.stroke();
        g.fillStyle = '#17803d'; g.fillText(T('in', '进'), mx + a[0] * 34 - 6, my + a[1] * 34 + 5);
      }
      g.fillStyle = '#fff'; g.fillText(l.id, x1 + 6, y1 - 6);
    }
    g.fillStyle = '#ffb000';
    for (const p of handles().map((h) => h.p).concat(draft)) { const [x, y] = px(p); g.fillRect(x - 4, y - 4, 8, 8); }
  }
  // handles are every point that can be dragged.
  function handles() {
    const out = [];
    lines.forEach((l) => { out.push({ p: l.from, set: (v) => { l.from = v; } }, { p: l.to, set: (v) => { l.to = v; } }); });
    zones.forEach((z) => z.polygon.forEach((p, i) => out.push({ p, set: (v) => { z.polygon[i] = v; } })));
    return out;
  }

  canvas.addEventListener('pointerdown', (ev) => {
    const p = norm(ev);
    if (tool === 'line') {
      draft.push(p);
      if (draft.length === 2) {
        const [a, b] = draft;
        // Entering is across the line, to the right of a steep line and
        // downwards across a flat one, until the admin picks otherwise.
        const dir = Math.abs(b[1] - a[1]) > Math.abs(b[0] - a[0]) ? 'right' : 'down';
        lines.push({ id: unique('line', lines.map((l) => l.id)), from: a, to: b, in: dir });
        tool = null; draft = []; list();
      }
    } else if (tool === 'zone') {
      if (draft.length >= 3 && near(px(p), px(draft[0]))) {
        zones.push({ id: unique('zone', zones.map((z) => z.id)), polygon: draft });
        tool = null; draft = []; list();
      } else draft.push(p);
    } else {
      drag = handles().find((h) => near(px(h.p), px(p))) || null;
      if (drag) canvas.setPointerCapture(ev.pointerId);
    }
    draw();
  });
  canvas.addEventListener('pointermove', (ev) => { if (drag) { drag.set(norm(ev)); drag.p = norm(ev); draw(); } });
  canvas.addEventListener('pointerup', () => { drag = null; });

  // list shows each line and zone with what the admin types: its id, a
  // line's direction, a zone's capacity; and a delete button.
  function list() {
    items.textContent = '';
    const row = (label, item, all, extra) => {
      const div = document.createElement('div');
      div.className = 'editor-item';
      const id = document.createElement('input');
      id.value = item.id; id.size = 12; id.setAttribute('aria-label', label + ' id');
      id.oninput = () => { item.id = id.value; draw(); };
      const del = document.createElement('button');
      del.type = 'button'; del.textContent = T('delete', '删除');
      del.onclick = () => { all.splice(all.indexOf(item), 1); list(); draw(); };
      div.append(label + ' ', id, ' ', ...extra, ' ', del);
      items.appendChild(div);
    };
    for (const l of lines) {
      const sel = document.createElement('select');
      sel.setAttribute('aria-label', 'in');
      const names = { up: T('up', '向上'), down: T('down', '向下'), left: T('left', '向左'), right: T('right', '向右'), left_to_right: 'left_to_right', right_to_left: 'right_to_left' };
      for (const d of ['up', 'down', 'left', 'right'].concat(arrows[l.in] ? [] : [l.in || 'left_to_right'])) {
        const o = document.createElement('option'); o.value = d; o.textContent = names[d] || d; sel.appendChild(o);
      }
      sel.value = l.in || 'left_to_right';
      sel.onchange = () => { l.in = sel.value; draw(); };
      row(T('Line', '计数线'), l, lines, [T('entering:', '进入方向：') + ' ', sel]);
    }
    for (const z of zones) {
      const cap = document.createElement('input');
      cap.type = 'number'; cap.min = 0; cap.value = z.capacity || 0; cap.style.width = '5em'; cap.setAttribute('aria-label', 'capacity');
      cap.oninput = () => { z.capacity = parseInt(cap.value, 10) || 0; };
      row(T('Zone', '区域'), z, zones, [T('capacity:', '容量：') + ' ', cap]);
    }
  }

  box.querySelectorAll('[data-tool]').forEach((b) => b.addEventListener('click', () => {
    tool = b.dataset.tool; draft = [];
    say(tool === 'line' ? T('Click the line\'s two ends on the picture.', '在画面上点击计数线的两端。')
      : T('Click each corner; click the first again to close the zone.', '依次点击各个角；再次点击第一个角以闭合区域。'));
  }));
  document.getElementById('editor-save').addEventListener('click', async () => {
    say(T('saving…', '保存中…'));
    const r = await fetch('/admin/counting/' + encodeURIComponent(camera), {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ lines, zones }),
    });
    if (r.status === 204) say(file ? T('Saved to ', '已保存到 ') + file + T('; counting restarted with it.', '；计数已按新设置重新开始。')
      : T('Applied until veil restarts (no configuration file to write).', '已生效，直到 veil 重启（没有可写入的配置文件）。'));
    else say((await r.text()).trim(), true);
  });
  let file = '';
  box.addEventListener('toggle', () => { canvas.style.display = box.open && !refused ? 'block' : 'none'; draw(); });
  window.addEventListener('resize', draw);
  video.addEventListener('loadedmetadata', draw);
  fetch('/admin/counting/' + encodeURIComponent(camera)).then((r) => r.json()).then((c) => {
    lines = c.lines; zones = c.zones; file = c.file; refused = c.refused;
    if (refused) { say(refused, true); box.querySelectorAll('button').forEach((b) => { b.disabled = true; }); }
    list(); draw();
  });
})();
