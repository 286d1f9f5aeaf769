// strokes — drawing page front end.
//
// Records pointer strokes on a canvas, sends them to POST /api/classify after
// each finished stroke (debounced) and shows the top-k predictions.
// Plain script, no build step, no dependencies.
'use strict';

(() => {
  const TOP_K = 5;
  const DEBOUNCE_MS = 150;

  const $ = (id) => document.getElementById(id);
  const canvas = $('pad');
  const ctx = canvas.getContext('2d');
  const resultsEl = $('results');
  const statusEl = $('status');
  const modelEl = $('model');

  // ---- state -------------------------------------------------------------
  const strokes = [];       // finished strokes: arrays of {x, y, t}; never reassigned
  let current = null;       // stroke being drawn, or null
  let activePointer = null; // pointerId of the pointer that draws `current`
  let padRect = null;       // canvas bounding rect cached at pointerdown
  let view = { w: 1, h: 1, dpr: 1 }; // canvas CSS size and backing-store scale
  let debounceTimer = 0;
  let requestId = 0;        // bumped for every request; only the latest may render
  let controller = null;    // AbortController of the in-flight request

  /** "idle" (no ink), "pending" (ink changed, answer not shown yet), "ready", "error". */
  function setState(state) {
    document.body.dataset.state = state;
    resultsEl.setAttribute('aria-busy', String(state === 'pending'));
  }

  function setStatus(message, isError = false) {
    statusEl.textContent = message;
    statusEl.classList.toggle('is-error', Boolean(message) && isError);
  }

  // ---- canvas sizing and drawing -----------------------------------------

  /** Match the backing store to CSS size * devicePixelRatio, then redraw. */
  function resize() {
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    view = { w: Math.max(1, rect.width), h: Math.max(1, rect.height), dpr };
    const w = Math.round(view.w * dpr);
    const h = Math.round(view.h * dpr);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;   // resets the context state; redraw() restores it
      canvas.height = h;
    }
    redraw();
  }

  /** Context settings; reapplied after every resize. Ink colour comes from CSS. */
  function applyInkStyle() {
    ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = Math.max(2.5, Math.min(view.w, view.h) / 90);
    ctx.strokeStyle = getComputedStyle(canvas).color || '#111';
  }

  function drawStroke(points) {
    if (!points.length) return;
    ctx.beginPath();
    ctx.moveTo(points[0].x, points[0].y);
    // A single point becomes a tiny segment so the round cap renders a dot.
    if (points.length === 1) ctx.lineTo(points[0].x + 0.01, points[0].y);
    for (let i = 1; i < points.length; i++) ctx.lineTo(points[i].x, points[i].y);
    ctx.stroke();
  }

  function redraw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    applyInkStyle();
    strokes.forEach(drawStroke);
    if (current) drawStroke(current);
  }

  // ---- pointer input -----------------------------------------------------

  const round1 = (v) => Math.round(v * 10) / 10;
  // Epoch ms of performance.now() == 0 (timeOrigin is missing in very old Safari).
  const TIME_ORIGIN = performance.timeOrigin || Date.now() - performance.now();

  /** Point in canvas CSS pixels; t is epoch ms (same clock as Date.now()). */
  function toPoint(e) {
    const ts = e.timeStamp > 0 ? e.timeStamp : performance.now();
    return {
      x: round1(e.clientX - padRect.left),
      y: round1(e.clientY - padRect.top),
      t: Math.round(TIME_ORIGIN + ts),
    };
  }

  /** Append a point to the current stroke and draw the new segment. */
  function addPoint(p) {
    const last = current[current.length - 1];
    if (last && last.x === p.x && last.y === p.y) return; // skip jitter duplicates
    current.push(p);
    drawStroke(last ? [last, p] : [p]);
  }

  function onPointerDown(e) {
    if (activePointer !== null) return;                      // one stroke at a time
    if (e.pointerType === 'mouse' && e.button !== 0) return; // left button only
    e.preventDefault();
    activePointer = e.pointerId;
    try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* not fatal */ }
    padRect = canvas.getBoundingClientRect();
    clearTimeout(debounceTimer); // a new stroke cancels a pending send
    current = [];
    addPoint(toPoint(e));
    setState('pending');
  }

  function onPointerMove(e) {
    if (e.pointerId !== activePointer || !current) return;
    // Coalesced events carry the intermediate samples of fast pens/mice.
    const samples = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const s of samples.length ? samples : [e]) addPoint(toPoint(s));
  }

  /** pointerup / pointercancel / lostpointercapture all end the stroke (idempotent). */
  function onPointerEnd(e) {
    if (e.pointerId !== activePointer || !current) return;
    if (e.type === 'pointerup') addPoint(toPoint(e));
    activePointer = null;
    strokes.push(current);
    current = null;
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(classify, DEBOUNCE_MS);
  }

  // ---- classification ----------------------------------------------------

  /** Abort the in-flight request and make any answer still on its way stale. */
  function cancelRequests() {
    clearTimeout(debounceTimer);
    requestId++;
    if (controller) controller.abort();
    controller = null;
  }

  /**
   * Classify the finished strokes now. Resolves to the results array, or null
   * when the request failed or was superseded by a newer one.
   */
  async function classify() {
    cancelRequests();
    const id = requestId;
    if (!strokes.length) {
      showHint();
      setState('idle');
      return [];
    }
    controller = new AbortController();
    setState('pending');

    let res, data;
    try {
      res = await fetch(`/api/classify?k=${TOP_K}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ strokes }),
        signal: controller.signal,
      });
      data = await res.json().catch(() => null);
    } catch (err) {
      if (id !== requestId || err.name === 'AbortError') return null;
      setStatus('Cannot reach the server. Is it running?', true);
      setState('error');
      return null;
    }
    if (id !== requestId) return null; // a newer request owns the display

    if (!res.ok || !data) {
      const msg = (data && data.error) || `Server error (HTTP ${res.status}).`;
      setStatus(msg, true);
      setState('error');
      return null;
    }
    const results = Array.isArray(data.results) ? data.results.slice(0, TOP_K) : [];
    renderResults(results);
    setStatus('');
    setState(current ? 'pending' : 'ready'); // still drawing: newer ink is coming
    return results;
  }

  // ---- results rendering (textContent only: server strings are never HTML) --

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showHint(text = 'Draw a symbol') {
    resultsEl.replaceChildren(el('p', 'hint', text));
  }

  function formatPercent(score) {
    const pct = Math.min(1, Math.max(0, Number(score) || 0)) * 100;
    return pct < 10 && pct > 0 ? `${pct.toFixed(1)}%` : `${Math.round(pct)}%`;
  }

  function renderResults(results) {
    if (!results.length) {
      showHint('No matches');
      return;
    }
    const list = el('ol', 'result-list');
    results.forEach((r, i) => {
      const symbol = String(r.symbol);
      const pct = formatPercent(r.score);
      const row = el('li', 'result');
      row.dataset.symbol = symbol;

      row.append(el('span', 'rank', String(i + 1)));
      const glyph = el('span', r.unicode ? 'glyph' : 'glyph none', r.unicode || '–');
      glyph.setAttribute('aria-hidden', 'true');
      row.append(glyph);

      const info = el('div', 'info');
      info.append(el('code', '', symbol));
      const prob = el('div', 'prob');
      prob.append(el('span', 'pct', pct));
      const bar = el('span', 'bar');
      bar.setAttribute('aria-hidden', 'true');
      const fill = el('span', 'bar-fill');
      fill.style.width = pct.replace('%', '') + '%';
      bar.append(fill);
      prob.append(bar);
      info.append(prob);
      row.append(info);

      const copy = el('button', 'copy', 'Copy');
      copy.type = 'button';
      copy.dataset.copy = symbol;
      copy.setAttribute('aria-label', `Copy ${symbol}`);
      row.append(copy);
      list.append(row);
    });
    resultsEl.replaceChildren(list);
  }

  // ---- clipboard ---------------------------------------------------------

  async function copyText(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch (_) { /* fall through to the legacy path */ }
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.cssText = 'position:fixed;top:0;left:0;opacity:0;';
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
    ta.remove();
    return ok;
  }

  resultsEl.addEventListener('click', async (e) => {
    const button = e.target.closest('button[data-copy]');
    if (!button) return;
    const ok = await copyText(button.dataset.copy);
    button.textContent = ok ? 'Copied' : 'Failed';
    button.classList.toggle('copied', ok);
    clearTimeout(button._resetTimer);
    button._resetTimer = setTimeout(() => {
      button.textContent = 'Copy';
      button.classList.remove('copied');
    }, 1200);
  });

  // ---- undo / clear ------------------------------------------------------

  function clear() {
    strokes.length = 0;
    current = null;
    activePointer = null;
    cancelRequests();
    redraw();
    showHint();
    setStatus('');
    setState('idle');
  }

  /** Remove the last stroke (or abandon the one being drawn) and re-classify. */
  function undo() {
    if (current) {
      current = null;
      activePointer = null;
    } else {
      strokes.pop();
    }
    if (!strokes.length) {
      clear();
      return Promise.resolve([]);
    }
    redraw();
    return classify();
  }

  $('undo').addEventListener('click', () => { undo(); });
  $('clear').addEventListener('click', clear);

  document.addEventListener('keydown', (e) => {
    if (e.target.closest && e.target.closest('input, textarea, [contenteditable]')) return;
    const isZ = e.key === 'z' || e.key === 'Z' || e.code === 'KeyZ';
    if ((e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && isZ) {
      e.preventDefault();
      undo();
    } else if (e.key === 'Escape') {
      clear();
    }
  });

  // ---- footer: model info ------------------------------------------------

  async function loadModelInfo() {
    try {
      const res = await fetch('/api/symbols', { headers: { Accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const data = await res.json();
      const count = Array.isArray(data.symbols) ? data.symbols.length : 0;
      modelEl.textContent = `Model: ${data.model || 'unknown'} · ${count} symbols`;
    } catch (_) {
      modelEl.textContent = 'Model: unavailable';
      if (!statusEl.textContent) setStatus('Cannot reach the server. Is it running?', true);
    }
  }

  // ---- wiring ------------------------------------------------------------

  canvas.addEventListener('pointerdown', onPointerDown);
  canvas.addEventListener('pointermove', onPointerMove);
  canvas.addEventListener('pointerup', onPointerEnd);
  canvas.addEventListener('pointercancel', onPointerEnd);
  canvas.addEventListener('lostpointercapture', onPointerEnd);
  canvas.addEventListener('contextmenu', (e) => e.preventDefault()); // long-press menus

  new ResizeObserver(resize).observe(canvas);
  window.addEventListener('resize', resize);
  // devicePixelRatio can change without a resize (window moved to another screen).
  (function watchDpr() {
    const mq = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
    mq.addEventListener('change', () => { resize(); watchDpr(); }, { once: true });
  })();
  // Ink colour follows the light/dark theme.
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', redraw);

  window.strokesApp = { strokes, classify, clear, undo, redraw };
  resize();
  showHint();
  setState('idle');
  loadModelInfo();
})();
