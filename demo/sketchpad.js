// The drawing canvas's behaviour: the body of gr.HTML's js_on_load (demo/sketchpad.py), run once when the page
// shows the component, with `element` (its root), `props` (its value, the drawing; `side` and `brush`) and `trigger`
// (sends an event to the server). The drawing is Quick, Draw!'s raw format: strokes [xs, ys, ts] in canvas pixels
// and milliseconds since the drawing's first point. After each stroke, undo and clear, the whole list is sent.
const canvas = element.querySelector('canvas');
const context = canvas.getContext('2d');
const side = canvas.width;
let strokes = [];
let pen = null;  // the stroke being drawn and the pointer drawing it
let start = 0;  // the drawing's first event time

function redraw() {
  context.fillStyle = '#fff';
  context.fillRect(0, 0, side, side);
  context.strokeStyle = '#000';
  context.lineWidth = props.brush;
  context.lineCap = 'round';
  context.lineJoin = 'round';
  for (const [xs, ys] of strokes) {
    context.beginPath();
    context.moveTo(xs[0], ys[0]);
    context.lineTo(xs[0] + 0.01, ys[0]);  // a one-point stroke is a dot
    for (let i = 1; i < xs.length; i++) context.lineTo(xs[i], ys[i]);
    context.stroke();
  }
  for (const button of element.querySelectorAll('[data-needs-drawing]')) button.disabled = strokes.length === 0;
}

function send() {
  props.value = strokes.map(stroke => stroke.map(row => row.slice()));
  trigger('input');
}

function add(event) {
  const box = canvas.getBoundingClientRect();
  const x = Math.round((event.clientX - box.left) * side / box.width);
  const y = Math.round((event.clientY - box.top) * side / box.height);
  const [xs, ys, ts] = pen.stroke;
  if (xs.length && xs[xs.length - 1] === x && ys[ys.length - 1] === y) return;
  xs.push(x);
  ys.push(y);
  ts.push(Math.max(Math.round(event.timeStamp - start), ts.length ? ts[ts.length - 1] : 0));
}

canvas.addEventListener('pointerdown', event => {
  if (pen || (event.pointerType === 'mouse' && event.button !== 0)) return;
  event.preventDefault();  // no text selection, no scrolling: the canvas also says touch-action: none
  canvas.setPointerCapture(event.pointerId);
  if (!strokes.length) start = event.timeStamp;
  pen = {id: event.pointerId, stroke: [[], [], []]};
  strokes.push(pen.stroke);
  add(event);
  redraw();
});

canvas.addEventListener('pointermove', event => {
  if (!pen || event.pointerId !== pen.id) return;
  event.preventDefault();
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];  // a pen's points between frames
  for (const each of coalesced.length ? coalesced : [event]) add(each);
  redraw();
});

function finish(event) {
  if (!pen || event.pointerId !== pen.id) return;
  pen = null;
  send();
}
canvas.addEventListener('pointerup', finish);
canvas.addEventListener('pointercancel', finish);

function undo() {
  if (pen || !strokes.length) return;
  strokes.pop();
  redraw();
  send();
}

function clear() {
  if (pen || !strokes.length) return;
  strokes = [];
  redraw();
  send();
}

document.addEventListener('keydown', event => {
  const ctrlZ = (event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey && event.key.toLowerCase() === 'z';
  const typing = event.target.closest && event.target.closest('input, textarea, select, [contenteditable]');
  if (!ctrlZ || typing || !canvas.checkVisibility()) return;  // Ctrl+Z in a text box, or another tab, is theirs
  event.preventDefault();
  undo();
});

function download(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function ndjson() {  // one Quick, Draw! raw record; /search takes it as it is
  const record = {word: '', countrycode: '', timestamp: new Date().toISOString(), recognized: false, key_id: '',
                  drawing: strokes};
  download(new Blob([JSON.stringify(record) + '\n'], {type: 'application/x-ndjson'}), 'drawing.ndjson');
}

const actions = {undo, clear, ndjson, png: () => canvas.toBlob(blob => download(blob, 'drawing.png'), 'image/png')};
for (const button of element.querySelectorAll('[data-action]')) {
  button.addEventListener('click', () => actions[button.dataset.action]());
}
redraw();
