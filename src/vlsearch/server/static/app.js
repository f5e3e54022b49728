// The vlsearch web page: search a collection (text and/or image), play video hits, add files.
const $ = (selector) => document.querySelector(selector);
const ui = {
  collection: $('#collection'), info: $('#collection-info'), watch: $('#watch-info'), key: $('#api-key'),
  form: $('#search'),
  query: $('#query'), image: $('#query-image'), preview: $('#query-preview'), rerank: $('#rerank'), mode: $('#mode'),
  moments: $('#moments'),
  topK: $('#top-k'), where: $('#where'), message: $('#message'), summary: $('#summary'), results: $('#results'),
  target: $('#upload-collection'), drop: $('#drop'), files: $('#upload-files'), job: $('#job'),
  progress: $('#job-progress'), jobStatus: $('#job-status'), failures: $('#job-failures'),
  player: $('#player'), playerTitle: $('#player-title'), video: $('#player-video'),
};
let queryImage = null; // data URI of the query image
let blobUrl = null; // the video fetched with the API key, when one is set
let watchTimer = null; // refreshes the collections while the chosen one is watched

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.includes('-')) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

const basename = (path) => path.split(/[\\/]/).pop();
// how a card names its source: a bucket object by its whole URI, an archive member from the archive's
// name down (report.zip!/dir/page.pdf), a local file by its name (the whole path is in the tooltip)
function shownName(source) {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) return source;
  const at = source.indexOf('!/');
  return at < 0 ? basename(source) : basename(source.slice(0, at)) + source.slice(at);
}
const enc = encodeURIComponent;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function clock(seconds) {
  const s = Math.max(0, seconds);
  const whole = Math.floor(s);
  const tenths = Math.round((s - whole) * 10) % 10;
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}${tenths ? `.${tenths}` : ''}`;
}

function authHeaders(extra = {}) {
  const key = ui.key.value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// fetch JSON; a failed request throws the message of the server's JSON error body
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!response.ok) throw new Error(body?.error?.message || `${response.status} ${response.statusText}`);
  return body;
}

function show(error) {
  ui.message.textContent = error ? String(error.message || error) : '';
  ui.message.hidden = !error;
}

// ------------------------------------------------------------------ collections

async function loadCollections(choose) {
  try {
    const { data } = await api('/v1/collections');
    const wanted = choose || ui.collection.value || localStorage.getItem('vlsearch.collection');
    const options = data.map((c) => el('option', { value: c.name, textContent: c.name }));
    ui.collection.replaceChildren(...(options.length ? options
      : [el('option', { value: '', textContent: 'no collections yet', disabled: true })]));
    if (data.some((c) => c.name === wanted)) ui.collection.value = wanted;
    ui.collection.dataset.info = JSON.stringify(Object.fromEntries(data.map((c) => [c.name, c])));
    collectionChanged();
  } catch (error) {
    show(error);
  }
}

async function loadModels() {
  try {
    const { data } = await api('/v1/models');
    const reranker = data.some((m) => m.type === 'rerank');
    ui.rerank.disabled = !reranker;
    if (!reranker) ui.rerank.checked = false;
    ui.rerank.parentElement.title = reranker ? '' : 'this server has no reranker loaded';
  } catch { /* loadCollections shows the error */ }
}

function collectionChanged() {
  const name = ui.collection.value;
  const c = JSON.parse(ui.collection.dataset.info || '{}')[name];
  const failed = c?.failed_files ? `, ${c.failed_files} failed` : '';
  ui.info.textContent = c ? `${c.items} items from ${c.files} files${failed}` : '';
  showWatch(c?.watch);
  if (name) {
    localStorage.setItem('vlsearch.collection', name);
    ui.target.value = name;
  } else if (!ui.target.value) {
    ui.target.value = 'uploads';
  }
}

// the state of a watched collection (serve --watch), refreshed while it is shown
function showWatch(watch) {
  clearTimeout(watchTimer);
  ui.watch.hidden = !watch;
  if (!watch) return;
  const folders = watch.folders || [];
  const watching = folders.filter((f) => f.state === 'watching').length;
  const missing = folders.filter((f) => f.state === 'missing');
  const activity = { starting: 'first pass', indexing: 'indexing' }[watch.state]
    || (watch.pending ? `${watch.pending} pending` : watch.state);
  ui.watch.textContent = `· watching ${watching} folder${watching === 1 ? '' : 's'}: ${activity}; `
    + `${watch.files_indexed} indexed, ${watch.files_removed} removed, ${watch.failed} failed`
    + (missing.length ? `; missing: ${missing.map((f) => f.path).join(', ')}` : '')
    + (watch.error ? `; error: ${watch.error}` : '');
  ui.watch.title = missing.map((f) => `${f.path}: ${f.message}`).join('\n');
  ui.watch.dataset.state = missing.length ? 'missing' : watch.state;
  watchTimer = setTimeout(() => loadCollections(), 3000);
}

// ------------------------------------------------------------------ query image: file picker or paste

function setQueryImage(file) {
  if (!file || !file.type.startsWith('image/')) return;
  const reader = new FileReader();
  reader.onload = () => {
    queryImage = reader.result;
    ui.preview.querySelector('img').src = queryImage;
    ui.preview.hidden = false;
  };
  reader.readAsDataURL(file);
}

function clearQueryImage() {
  queryImage = null;
  ui.image.value = '';
  ui.preview.hidden = true;
  ui.preview.querySelector('img').removeAttribute('src');
}

// ------------------------------------------------------------------ search

async function search(event) {
  event.preventDefault();
  show(null);
  const name = ui.collection.value;
  const text = ui.query.value.trim();
  if (!name) return show('Choose a collection first (or add files below).');
  if (!text && !queryImage) return show('Type a query, or choose or paste an image.');
  const body = { top_k: Number(ui.topK.value) || 10, rerank: ui.rerank.checked };
  if (text) body.query = text;
  if (queryImage) body.image = queryImage;
  if (ui.where.value.trim()) body.where = ui.where.value.trim();
  if (ui.mode.value) body.mode = ui.mode.value;
  if (ui.moments.checked) body.moments = true;
  const button = ui.form.querySelector('button[type=submit]');
  button.disabled = true;
  ui.results.setAttribute('aria-busy', 'true');
  ui.summary.textContent = 'Searching…';
  const started = performance.now();
  try {
    const data = await api(`/v1/collections/${enc(name)}/search`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
    ui.results.replaceChildren(...data.results.map((r) => card(r, name, words)));
    const ms = Math.round(performance.now() - started);
    ui.summary.textContent = data.results.length
      ? `${data.results.length} results in ${ms} ms, ${rerankSummary(data)}`
      : 'No results.';
  } catch (error) {
    ui.results.replaceChildren();
    ui.summary.textContent = '';
    show(error);
  } finally {
    button.disabled = false;
    ui.results.removeAttribute('aria-busy');
  }
}

// "7 of 10 reranked (rerank 7.9 s)", or why there are first-stage scores only
function rerankSummary(data) {
  if (!data.reranked) return 'vector scores only';
  const reranked = data.results.filter((r) => r.reranked).length;
  const seconds = data.timings?.rerank != null ? ` (rerank ${data.timings.rerank.toFixed(1)} s)` : '';
  return `${reranked === data.results.length ? 'all' : `${reranked} of ${data.results.length}`} reranked${seconds}`;
}

// the text with the query's words marked (built as nodes: the text is never parsed as HTML)
function highlighted(tag, className, text, words) {
  const node = el(tag, { className });
  const wanted = new Set(words);
  for (const part of text.split(/([\p{L}\p{N}]+)/u)) {
    node.append(wanted.has(part.toLowerCase()) ? el('mark', { textContent: part }) : document.createTextNode(part));
  }
  return node;
}

// where the best regions are: "line 3", "lines 12-14", "lines 2, 5-6" (as the CLI prints it)
function linesLabel(regions = []) {
  if (!regions.length) return '';
  const best = Math.max(...regions.map((g) => g.score));
  const source = regions.find((g) => g.score === best).source;
  const lines = [...new Set(regions.filter((g) => g.score === best && g.source === source).map((g) => g.line))]
    .sort((a, b) => a - b);
  const runs = [];
  for (const line of lines) {
    if (runs.length && line === runs.at(-1).at(-1) + 1) runs.at(-1).push(line); else runs.push([line]);
  }
  const spans = runs.map((run) => (run.length === 1 ? `${run[0]}` : `${run[0]}-${run.at(-1)}`)).join(', ');
  return `line${lines.length > 1 ? 's' : ''} ${spans}`;
}

// the thumbnail with the regions drawn over it (normalised boxes), each a link to its crop
function grounded(img, r, collection) {
  const crop = (g) => `/v1/collections/${enc(collection)}/items/${enc(r.id)}/media?box=${g.box.join(',')}`;
  const boxes = (r.regions || []).map((g, i) => {
    const link = el('a', { className: 'region', href: crop(g), target: '_blank', rel: 'noopener',
      title: `${g.text} (line ${g.line}, score ${g.score})`, 'data-region': i,
      onclick: (event) => { if (ui.key.value.trim()) { event.preventDefault(); openCrop(crop(g)).catch(show); } } });
    const [x0, y0, x1, y1] = g.norm;
    Object.assign(link.style, { left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`,
      height: `${(y1 - y0) * 100}%` });
    return link;
  });
  return boxes.length ? el('span', { className: 'figure' }, img, ...boxes) : img;
}

// a crop fetched with the API key (a link cannot send it), shown in a new tab
async function openCrop(url) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw new Error((await response.json().catch(() => null))?.error?.message || response.statusText);
  window.open(URL.createObjectURL(await response.blob()), '_blank', 'noopener');
}

function card(r, collection, words = []) {
  const name = shownName(r.source);
  const locator = r.page != null ? [`page ${r.page}`, linesLabel(r.regions)].filter(Boolean).join(', ')
    : r.start != null ? `${clock(r.start)} – ${clock(r.end)}${r.moment ? `, best ${clock(r.moment.start)} – ${clock(r.moment.end)}` : ''}`
      : linesLabel(r.regions);
  const from = r.moment?.start ?? r.start;
  const picture = r.thumbnail ? grounded(el('img', { src: r.thumbnail, alt: `${name} ${locator}`.trim() }), r, collection)
    : highlighted('p', 'snippet', r.text.slice(0, 300), words);
  const thumb = r.modality === 'video'
    ? el('button', { type: 'button', className: 'thumb play', 'aria-label': `Play ${name} from ${clock(from)}`,
      onclick: () => play(r, collection).catch(show) }, picture)
    : el('div', { className: 'thumb' }, picture);
  const score = (label, value, cls) => [el('dt', { textContent: label }),
    el('dd', { className: cls, textContent: value.toFixed(3) })];
  return el('li', { className: 'card', 'data-modality': r.modality, 'data-id': r.id },
    thumb,
    el('div', { className: 'meta' }, el('span', { className: 'badge', textContent: r.modality.replace('_', ' ') }),
      el('span', { className: 'rank', textContent: `#${r.rank}` })),
    el('p', { className: 'source', title: r.source, textContent: name }),
    locator && el('p', { className: 'locator', textContent: locator }),
    el('dl', { className: 'scores' },
      ...(r.vector_score != null ? score('vector', r.vector_score, 'vector-score') : []),
      ...(r.lexical_score != null ? score('bm25', r.lexical_score, 'lexical-score') : []),
      ...(r.rerank_score != null ? score('rerank', r.rerank_score, 'rerank-score') : [])),
    r.thumbnail && r.text ? highlighted('p', 'text', r.text.slice(0, 160), words) : null,
    r.note ? el('p', { className: r.reranked ? 'note' : 'note not-reranked', textContent: r.note }) : null);
}

// plays a video result from its moment when it has one, else from its segment's start
async function play(r, collection) {
  const [start, end] = r.moment ? [r.moment.start, r.moment.end] : [r.start, r.end];
  const url = `/v1/collections/${enc(collection)}/items/${enc(r.id)}/media`;
  let src = url;
  if (ui.key.value.trim()) { // a <video> cannot send the Authorization header: fetch the file with it
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw new Error((await response.json().catch(() => null))?.error?.message || response.statusText);
    blobUrl = URL.createObjectURL(await response.blob());
    src = blobUrl;
  }
  ui.playerTitle.textContent = `${shownName(r.source)}, ${clock(start)} – ${clock(end)}`;
  ui.video.addEventListener('loadedmetadata', () => {
    if (Math.abs(ui.video.currentTime - start) > 0.25) ui.video.currentTime = start;
  }, { once: true });
  ui.video.src = `${src}#t=${start},${end}`;
  ui.player.showModal();
  ui.video.play().catch(() => { /* autoplay refused: the controls remain */ });
}

function closePlayer() {
  ui.video.pause();
  ui.video.removeAttribute('src');
  ui.video.load();
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = null;
}

// ------------------------------------------------------------------ upload and ingestion jobs

async function upload(files) {
  const name = ui.target.value.trim();
  if (!files.length) return;
  if (!name || !ui.target.checkValidity()) {
    show('Give a collection name: letters, digits, ".", "_" and "-".');
    ui.target.focus();
    return;
  }
  show(null);
  const form = new FormData();
  for (const file of files) form.append('files', file, file.name);
  ui.job.hidden = false;
  ui.failures.replaceChildren();
  ui.progress.removeAttribute('value');
  ui.jobStatus.textContent = `Uploading ${files.length} file${files.length > 1 ? 's' : ''}…`;
  try {
    const { job_id: id } = await api(`/v1/collections/${enc(name)}/ingest`, { method: 'POST', body: form });
    let job;
    do {
      await sleep(300);
      job = await api(`/v1/jobs/${enc(id)}`);
      renderJob(job);
    } while (job.status === 'queued' || job.status === 'running');
    await loadCollections(name);
  } catch (error) {
    ui.jobStatus.textContent = 'Upload failed.';
    show(error);
  }
}

function renderJob(job) {
  const { files_done: done, files_total: total, items } = job.progress;
  const report = job.report;
  const failed = report?.failed || [];
  ui.progress.max = total || 1;
  ui.progress.value = job.status === 'done' ? ui.progress.max : done;
  if (job.status === 'failed') {
    ui.jobStatus.textContent = `Failed: ${job.error}`;
  } else if (job.status === 'done') {
    ui.jobStatus.textContent = `Done: ${report.seen} files, ${report.items} items embedded; ${report.new} new, `
      + `${report.changed} changed, ${report.unchanged} unchanged, ${report.skipped} skipped, ${failed.length} failed`;
  } else {
    ui.jobStatus.textContent = `${job.status === 'queued' ? 'Queued' : 'Indexing'}: `
      + `${done} of ${total ?? '?'} files, ${items} items`;
  }
  ui.job.dataset.status = job.status;
  ui.failures.replaceChildren(...failed.map((f) => el('li', { textContent: `${shownName(f.source)}: ${f.reason}` })));
}

// ------------------------------------------------------------------ wiring

ui.key.value = localStorage.getItem('vlsearch.apiKey') || '';
ui.key.addEventListener('change', () => {
  const key = ui.key.value.trim();
  if (key) localStorage.setItem('vlsearch.apiKey', key); else localStorage.removeItem('vlsearch.apiKey');
  show(null);
  loadModels();
  loadCollections();
});
ui.collection.addEventListener('change', collectionChanged);
ui.form.addEventListener('submit', search);
ui.image.addEventListener('change', () => setQueryImage(ui.image.files[0]));
$('#clear-image').addEventListener('click', clearQueryImage);
document.addEventListener('paste', (event) => {
  const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith('image/'));
  if (file) {
    event.preventDefault();
    setQueryImage(file);
  }
});
ui.files.addEventListener('change', () => {
  upload([...ui.files.files]);
  ui.files.value = '';
});
for (const type of ['dragenter', 'dragover']) {
  ui.drop.addEventListener(type, (event) => { event.preventDefault(); ui.drop.classList.add('over'); });
}
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.drop.classList.remove('over');
  upload([...event.dataTransfer.files]);
});
ui.player.addEventListener('close', closePlayer);
loadModels();
loadCollections();
