// The training-time cursor and the charts that follow it, in the browser (see scrub.py). A cursor move
// is drawn here without a server round trip: the cursor announces the step on `window`, each chart moves
// its dashed line and swaps in its per-step traces and title; the server hears of the step once the
// moves pause (DEBOUNCE_MS), then sends the values of the figures that need a model forward per step.
const EVENT = "grokscope-step";
const DEBOUNCE_MS = 60;

function plotly(url) {
  window.grokscopePlotly ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = url;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => reject(new Error(`plotly.js did not load from ${url}`));
    document.head.appendChild(script);
  });
  return window.grokscopePlotly;
}

function float32(encoded) {
  const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

function array(encoded, shape) {  // a (rows, columns) array as rows of views, as a heatmap's z
  const flat = float32(encoded);
  if (shape.length < 2) return flat;
  return Array.from({ length: shape[0] }, (_, r) => flat.subarray(r * shape[1], (r + 1) * shape[1]));
}

function announce(run, step, row) {
  window.grokscopeCursor = { run, step, row };
  window.dispatchEvent(new CustomEvent(EVENT, { detail: window.grokscopeCursor }));
}

function cursor(state, data, parent, setStateValue) {
  const steps = data.steps;
  if (!state.root) {  // built once: a rerun must not take the focus from the slider while keys are held
    state.root = document.createElement("div");
    state.root.className = "grokscope-cursor";
    state.bar = document.createElement("div");
    state.bar.className = "grokscope-marks";
    state.label = document.createElement("span");
    state.label.className = "grokscope-step";
    state.slider = document.createElement("input");
    state.slider.type = "range";
    state.slider.min = 0;
    state.slider.setAttribute("aria-label", "training step");
    state.slider.oninput = () => state.move(Number(state.slider.value));
    state.root.append(state.bar, state.slider);
    parent.appendChild(state.root);
    window.addEventListener(EVENT, (e) => state.follow(e.detail));
  }
  const sameRun = state.run === data.run && state.row !== undefined;
  const same = sameRun && state.steps.length === steps.length;
  const previous = sameRun ? state.steps[state.row] : null;  // where this page's cursor stood
  state.run = data.run;
  state.steps = steps;
  state.slider.max = steps.length - 1;
  const marks = JSON.stringify(data.marks);
  if (state.marks !== marks) {
    state.marks = marks;
    state.bar.replaceChildren();
    const button = (label, title, row) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.title = title;
      b.onclick = () => state.move(typeof row === "function" ? row() : row);
      state.bar.appendChild(b);
    };
    button("◀", "previous checkpoint (←)", () => Math.max(state.row - 1, 0));
    button("▶", "next checkpoint (→)", () => Math.min(state.row + 1, state.steps.length - 1));
    for (const [label, step] of data.marks) button(label, `step ${step}`, () => state.steps.indexOf(step));
    state.bar.appendChild(state.label);
  }

  state.move = (row) => {  // from this page: drawn at the next frame (rapid moves coalesce), sent when they pause
    state.row = row;
    cancelAnimationFrame(state.frame);
    state.frame = requestAnimationFrame(() => announce(state.run, state.steps[row], row));
    clearTimeout(state.timer);
    state.timer = setTimeout(() => setStateValue("step", state.steps[state.row]), DEBOUNCE_MS);
    state.show();
  };
  state.follow = (detail) => {  // a click on a chart moved the cursor
    if (detail.run === state.run && detail.row !== state.row) state.move(detail.row);
  };
  state.show = () => {
    state.slider.value = state.row;
    state.label.textContent = `step ${state.steps[state.row]} · checkpoint ${state.row + 1} of ${state.steps.length}`;
  };
  // the server's step holds for a new run or page; after that the moves made here win (a rerun under
  // way carries the step of an earlier move), also when a run still training adds checkpoints
  if (!same) {
    state.row = Math.max(steps.indexOf(steps.includes(previous) ? previous : data.step), 0);
    announce(state.run, steps[state.row], state.row);
  }
  state.show();
}

function chart(state, data, parent) {  // one render at a time, in order; a render overtaken is skipped
  state.latest = data;
  state.queue = (state.queue ?? Promise.resolve())
    .then(() => (state.latest === data ? render(state, data, parent) : undefined))
    .catch((error) => console.error(error));
}

async function render(state, data, parent) {
  if (!state.div) {
    state.div = document.createElement("div");
    state.div.className = "grokscope-chart";
    parent.appendChild(state.div);
    window.addEventListener(EVENT, (e) => state.move?.(e.detail));
  }
  if (state.revision !== data.revision) await draw(state, data);  // else the same figure: the cursor moves it
  if (data.at) await place(state, data.at);
}

async function place(state, at) {  // a figure's values at the server's step (Scrub.at), in one update
  const traces = [...new Set(at.traces.map(([trace]) => trace))];
  const update = {};
  for (const [trace, attribute, encoded, shape] of at.traces) {
    update[attribute] ??= traces.map(() => undefined);  // undefined: left as it is
    update[attribute][traces.indexOf(trace)] = array(encoded, shape);
  }
  await window.Plotly.update(state.div, update, { "title.text": at.title }, traces);
  state.div.dataset.step = at.step;
}

async function draw(state, data) {
  state.revision = data.revision;
  const Plotly = await plotly(data.plotly);
  const figure = JSON.parse(data.figure);
  figure.layout.width = state.div.clientWidth || undefined;
  const ys = data.ys.map(([trace, encoded, n]) => [trace, float32(encoded), n]);
  const cursors = (figure.layout.shapes || []).flatMap((s, i) => (s.name === "cursor" ? [i] : []));
  await Plotly.react(state.div, figure.data, figure.layout, { displaylogo: false, responsive: true });
  state.div.dataset.step = data.step;
  let busy = false;
  let next = null;
  state.move = async (at) => {  // one update per chart at a time; the latest step wins
    if (at.run !== data.run) return;
    next = at;
    if (busy) return;
    busy = true;
    while (next) {
      const { step, row } = next;
      next = null;
      const layout = {};
      for (const i of cursors) Object.assign(layout, { [`shapes[${i}].x0`]: step, [`shapes[${i}].x1`]: step });
      if (data.titles) layout["title.text"] = data.titles[Math.min(row, data.titles.length - 1)];
      const traces = ys.map(([, values, n]) => {
        const r = Math.min(row, values.length / n - 1);
        return values.subarray(r * n, (r + 1) * n);
      });
      if (traces.length || Object.keys(layout).length) {  // else drawn at the step by the server
        await Plotly.update(state.div, traces.length ? { y: traces } : {}, layout, ys.map(([t]) => t));
        state.div.dataset.step = step;
      }
    }
    busy = false;
  };
  if (cursors.length) {  // click-to-jump: a click on a time axis moves the cursor to the nearest saved step
    const xref = figure.layout.shapes[cursors[0]].xref || "x";
    state.div.on("plotly_click", (event) => {
      const point = event.points[0];
      if (point.xaxis._id !== xref.replace(" domain", "")) return;
      const steps = data.steps;
      let row = steps.findIndex((s) => s >= point.x);
      if (row < 0) row = steps.length - 1;
      announce(data.run, steps[row], row);
    });
  }
  const at = window.grokscopeCursor;
  state.move(at && at.run === data.run ? at : { run: data.run, step: data.step, row: data.row });
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  parentElement.grokscope ??= {};
  if (data.kind === "cursor") cursor(parentElement.grokscope, data, parentElement, setStateValue);
  else chart(parentElement.grokscope, data, parentElement);
}
