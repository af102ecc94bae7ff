// One accepted call: the RTCPeerConnection with the kiosk, the agent's camera and microphone,
// and the in-call view (videos, controls, timer, call quality, snapshots).
//
// Signalling follows docs/calls.md: the kiosk makes the offer, the console answers; candidates
// trickle both ways (`ice` with `candidate` and `sdp_mline_index`, an empty candidate meaning
// "no more"). Frames leave through `send` (the agents' WebSocket, owned by calls.js) and arrive
// through `signal(msg)`. Inbound signalling is applied strictly in order through one queue, so
// kiosk candidates that come before the offer are kept and applied right after it.

import { api, seg, errorText } from './api.js';
import { h } from './ui.js';

const SNAPSHOT_MAX = 2 * 1024 * 1024; // bytes, the server's limit
const MEDIA_WAIT_MS = 20000; // how long an answer waits for the camera/microphone prompt
const CAMERA = { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: 'user' };

let current = null;
// The session on screen (or null): read by calls.js for window.kioskcallCall.
export const activeSession = () => current;

// ---------- the agent's camera and microphone ----------

// Asks for camera + microphone, falling back to one of them. Never rejects: resolves to
// {stream, notice}, stream null when nothing can be used (the call then goes on receive-only).
export async function requestMedia() {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    return {
      stream: null,
      notice:
        'This browser cannot use a camera or microphone on this page. The call goes on: you see and hear the kiosk, the customer cannot see or hear you.',
    };
  }
  const tries = [
    [{ audio: true, video: CAMERA }, null],
    [{ audio: true }, 'No camera could be used: the customer hears you but cannot see you.'],
    [{ video: CAMERA }, 'No microphone could be used: the customer sees you but cannot hear you.'],
  ];
  let last = null;
  for (const [constraints, notice] of tries) {
    try {
      return { stream: await md.getUserMedia(constraints), notice };
    } catch (err) {
      last = err;
      if (err && (err.name === 'NotAllowedError' || err.name === 'SecurityError')) break;
    }
  }
  const denied = last && (last.name === 'NotAllowedError' || last.name === 'SecurityError');
  return {
    stream: null,
    notice: denied
      ? 'Camera and microphone access is blocked. The call goes on: you see and hear the kiosk, the customer cannot see or hear you. Allow access in the browser’s site settings for the next call.'
      : 'No camera or microphone could be used. The call goes on: you see and hear the kiosk, the customer cannot see or hear you.',
  };
}

export function stopStream(stream) {
  if (stream) for (const t of stream.getTracks()) t.stop();
}

// Resolves to `value` after `ms`, or to the promise's value if it settles first.
function within(promise, ms, value) {
  let timer;
  return Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms, value)))]).finally(() =>
    clearTimeout(timer),
  );
}

export const fmtClock = (ms) => {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hr = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hr ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hr ? `${hr}:${mm}:${ss}` : `${mm}:${ss}`;
};

const place = (kiosk, site) => [kiosk && kiosk.name, site && site.name].filter(Boolean).join(', ') || 'the kiosk';

// ---------- the session ----------

const STATE_TEXT = {
  connecting: 'Connecting to the kiosk…',
  connected: 'Connected',
  interrupted: 'Connection interrupted, trying to restore it…',
  failed: 'The connection to the kiosk failed. End the call and let the customer call again.',
  ended: 'Call ended',
};

export class CallSession {
  // opts: {call, kiosk, site, kind, iceServers, media (promise from requestMedia), send(frame),
  //        org (slug, for snapshots), onClosed(summary)}
  constructor(opts) {
    this.id = opts.call;
    this.kiosk = opts.kiosk || null;
    this.site = opts.site || null;
    this.kind = opts.kind || null;
    this.iceServers = Array.isArray(opts.iceServers) ? opts.iceServers : [];
    this.mediaPromise = opts.media || requestMedia();
    this.send = opts.send;
    this.org = opts.org;
    this.onClosed = opts.onClosed || (() => {});
    this.state = 'connecting';
    this.startedAt = Date.now();
    this.pc = null;
    this.local = null; // the agent's MediaStream, or null (receive-only)
    this.remote = new MediaStream();
    this.pendingIce = [];
    this.queue = Promise.resolve();
    this.answered = false;
    this.makingOffer = false;
    this.sentEnd = false;
    this.closed = false;
    this.quality = null;
    this.prevStats = null;
    this.blobUrls = [];
    this.cameras = [];
    this.timers = [];
    this.buildView();
  }

  // ---------- peer connection ----------

  start() {
    current = this;
    try {
      this.pc = new RTCPeerConnection({ iceServers: this.iceServers });
    } catch (err) {
      // A malformed ICE server entry: host candidates still work on a plain network.
      this.notify(`The call’s ICE servers were refused (${errorText(err)}); trying without them.`);
      this.pc = new RTCPeerConnection();
    }
    const pc = this.pc;
    pc.addEventListener('track', (e) => {
      if (!this.remote.getTracks().includes(e.track)) this.remote.addTrack(e.track);
      e.track.addEventListener('ended', () => this.remote.removeTrack(e.track));
      if (this.remoteVideo.srcObject !== this.remote) this.remoteVideo.srcObject = this.remote;
      this.play(this.remoteVideo);
    });
    pc.addEventListener('icecandidate', (e) => {
      const c = e.candidate;
      if (c && c.candidate) {
        this.send({ type: 'ice', call: this.id, candidate: c.candidate, sdp_mline_index: c.sdpMLineIndex ?? 0 });
      } else if (!this.sentEnd) {
        this.sentEnd = true;
        this.send({ type: 'ice', call: this.id, candidate: '', sdp_mline_index: c ? c.sdpMLineIndex ?? 0 : 0 });
      }
    });
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'gathering') this.sentEnd = false;
    });
    pc.addEventListener('connectionstatechange', () => {
      const s = pc.connectionState;
      if (s === 'connected') this.setState('connected');
      else if (s === 'disconnected') this.setState('interrupted');
      else if (s === 'failed') this.setState('failed');
    });
    // The kiosk offers; the console offers only to add media that came after its first answer
    // (a slow permission prompt).
    pc.addEventListener('negotiationneeded', () => {
      if (this.answered) this.offer();
    });

    this.mediaPromise.then((res) => this.useMedia(res));
    this.timers.push(setInterval(() => this.tick(), 1000));
    this.tick();
    return this;
  }

  // An `sdp` or `ice` frame from the kiosk, for this call.
  signal(msg) {
    this.queue = this.queue
      .then(() => (msg.type === 'sdp' ? this.onSdp(msg) : this.onIce(msg)))
      .catch((err) => {
        if (!this.closed) this.notify(`Signalling problem: ${errorText(err)}`);
      });
  }

  async onSdp(msg) {
    const pc = this.pc;
    if (this.closed || typeof msg.sdp !== 'string') return;
    if (msg.sdp_type === 'offer') {
      // The console is the polite side: the kiosk's offer wins over one of ours.
      if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      await this.flushIce();
      if (!this.answered) await this.waitForMedia();
      this.attachTracks();
      await pc.setLocalDescription(await pc.createAnswer());
      this.send({ type: 'sdp', call: this.id, sdp_type: 'answer', sdp: pc.localDescription.sdp });
      this.answered = true;
    } else if (msg.sdp_type === 'answer' && pc.signalingState === 'have-local-offer') {
      await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      await this.flushIce();
    }
  }

  async onIce(msg) {
    const init = {
      candidate: String(msg.candidate ?? '').replace(/^a=/, ''),
      sdpMLineIndex: Number.isInteger(msg.sdp_mline_index) ? msg.sdp_mline_index : 0,
    };
    if (!this.pc.remoteDescription) this.pendingIce.push(init);
    else await this.addIce(init);
  }

  async flushIce() {
    const pending = this.pendingIce;
    this.pendingIce = [];
    for (const init of pending) await this.addIce(init);
  }

  async addIce(init) {
    try {
      await this.pc.addIceCandidate(init);
    } catch (err) {
      // One bad candidate (or an end-of-candidates the browser does not take) does not harm
      // the call: the other candidates still connect it.
      console.warn('ICE candidate not applied', init, err);
    }
  }

  async offer() {
    const pc = this.pc;
    if (this.closed || this.makingOffer || pc.signalingState !== 'stable') return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription(await pc.createOffer());
      this.send({ type: 'sdp', call: this.id, sdp_type: 'offer', sdp: pc.localDescription.sdp });
    } catch (err) {
      this.notify(`Could not add your camera to the call: ${errorText(err)}`);
    } finally {
      this.makingOffer = false;
    }
  }

  // Before the first answer: wait for the camera/microphone prompt, within reason.
  async waitForMedia() {
    if (this.mediaSettled) return;
    const res = await within(this.mediaPromise, MEDIA_WAIT_MS, null);
    if (!res) this.notify('Still waiting for camera and microphone permission: the call starts without them and adds them once allowed.');
  }

  // The result of requestMedia (once).
  useMedia(res) {
    this.mediaSettled = true;
    if (this.closed) {
      stopStream(res.stream);
      return;
    }
    if (res.notice) this.notify(res.notice);
    this.local = res.stream;
    this.localVideo.srcObject = res.stream;
    this.localVideo.hidden = !res.stream || !res.stream.getVideoTracks().length;
    if (res.stream) this.play(this.localVideo);
    this.updateMirror();
    this.findCameras();
    this.updateControls();
    // Media that came after the first answer: attach it (the console then renegotiates).
    if (this.answered) this.attachTracks();
  }

  // Put the agent's tracks on the kiosk's transceivers, one track per kind.
  attachTracks() {
    if (!this.local) return;
    const used = new Set();
    for (const t of this.pc.getTransceivers()) {
      const kind = t.receiver.track && t.receiver.track.kind;
      if (!kind || t.stopped || t.currentDirection === 'stopped' || used.has(kind)) continue;
      const track = this.local.getTracks().find((x) => x.kind === kind);
      if (!track) continue;
      used.add(kind);
      if (t.sender.track !== track) t.sender.replaceTrack(track).catch((err) => this.notify(errorText(err)));
      if (t.sender.setStreams) t.sender.setStreams(this.local);
      if (t.direction === 'recvonly' || t.direction === 'inactive') t.direction = 'sendrecv';
    }
  }

  // ---------- view ----------

  buildView() {
    const who = place(this.kiosk, this.site);
    this.remoteVideo = h('video', {
      class: 'remote-video',
      'data-testid': 'call-remote-video',
      autoplay: true,
      playsinline: true,
      'aria-label': `Video from ${who}`,
    });
    this.localVideo = h('video', {
      class: 'local-video mirror',
      'data-testid': 'call-local-video',
      autoplay: true,
      playsinline: true,
      'aria-label': 'Your camera',
      hidden: true,
    });
    this.localVideo.muted = true; // the property, so it is muted from the start
    this.stateEl = h('p', { class: 'call-state', 'data-testid': 'call-state', 'data-state': this.state, role: 'status' }, STATE_TEXT.connecting);
    this.timerEl = h('span', { class: 'call-timer', 'data-testid': 'call-timer', 'aria-label': 'Call duration' }, '0:00');
    this.noticeEl = h('div', { class: 'call-notices', 'data-testid': 'call-notice', 'aria-live': 'polite' });

    // [word, more]: on a phone only the word shows; the name is always both.
    const button = (testid, [word, more], cls, onclick) =>
      h('button', { type: 'button', class: `call-btn ${cls || ''}`, 'data-testid': testid, onclick }, word, h('span', { class: 'call-btn-more' }, ` ${more}`));
    this.muteBtn = button('call-mute', ['Mute', 'microphone'], 'secondary', () => this.toggleMute());
    this.muteBtn.setAttribute('aria-pressed', 'false');
    this.cameraBtn = button('call-camera', ['Camera', 'off'], 'secondary', () => this.toggleCamera());
    this.cameraBtn.setAttribute('aria-pressed', 'false');
    this.switchBtn = button('call-switch-camera', ['Switch', 'camera'], 'secondary', () => this.switchCamera());
    this.switchBtn.hidden = true;
    this.snapBtn = button('call-snapshot', ['Snapshot', 'of the video'], 'secondary', () => this.snapshot());
    this.endBtn = button('call-end', ['End', 'call'], 'end', () => this.hangUp());
    this.returnLink = h('a', { href: '#/calls', class: 'call-return', 'data-testid': 'call-return' }, 'Back to the call');

    const q = (testid, label) => {
      const dd = h('dd', { 'data-testid': testid }, '—');
      return [dd, h('div', null, h('dt', null, label), dd)];
    };
    const [bitrate, bitrateRow] = q('quality-bitrate', 'Video in');
    const [loss, lossRow] = q('quality-loss', 'Packets lost');
    const [fps, fpsRow] = q('quality-fps', 'Frame rate');
    const [rtt, rttRow] = q('quality-rtt', 'Round trip');
    const [path, pathRow] = q('quality-path', 'Path');
    this.q = { bitrate, loss, fps, rtt, path };
    this.qualityEl = h(
      'section',
      { class: 'call-quality', 'data-testid': 'call-quality', 'aria-label': 'Call quality' },
      h('dl', null, bitrateRow, lossRow, fpsRow, rttRow, pathRow),
    );

    this.snapStatus = h('p', { class: 'form-ok', role: 'status', 'data-testid': 'snapshot-status' });
    this.snapError = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'snapshot-error' });
    this.snapList = h('ul', { class: 'snapshots', 'data-testid': 'snapshots', 'aria-label': 'Snapshots taken in this call' });

    const kindText = this.kind === 'test' ? 'Test call' : this.kind === 'customer' ? 'Customer call' : null;
    this.el = h(
      'section',
      { class: 'call-view', 'data-testid': 'call-view', 'data-call': this.id, 'aria-labelledby': 'call-title' },
      h(
        'div',
        { class: 'call-head' },
        h('h2', { id: 'call-title', tabindex: '-1' }, `Call with ${who}`),
        kindText ? h('span', { class: 'badge' }, kindText) : null,
        this.timerEl,
        this.stateEl,
      ),
      h('div', { class: 'call-stage' }, this.remoteVideo, this.localVideo),
      h('div', { class: 'call-controls', role: 'group', 'aria-label': 'Call controls' }, this.muteBtn, this.cameraBtn, this.switchBtn, this.snapBtn, this.endBtn, this.returnLink),
      this.noticeEl,
      h('div', { class: 'call-side' }, this.qualityEl, h('div', { class: 'call-snaps' }, this.snapStatus, this.snapError, this.snapList)),
    );
    this.updateControls();
  }

  // Media elements pause when moved in the document: play again (calls.js moves the view).
  resume() {
    for (const v of [this.remoteVideo, this.localVideo]) if (v.srcObject && v.paused) this.play(v);
  }

  play(video) {
    const p = video.play();
    if (p && p.catch) {
      p.catch((err) => {
        if (err && err.name === 'NotAllowedError' && video === this.remoteVideo) this.offerPlayButton();
      });
    }
  }

  // The browser refused to start sound without a gesture: one button to start it.
  offerPlayButton() {
    if (this.playBtn) return;
    this.playBtn = h('button', { type: 'button', class: 'call-btn', 'data-testid': 'call-play' }, 'Play the kiosk’s video and sound');
    this.playBtn.addEventListener('click', () => {
      this.remoteVideo.play().catch(() => {});
      this.playBtn.remove();
      this.playBtn = null;
    });
    this.noticeEl.append(h('p', { class: 'notice' }, this.playBtn));
  }

  notify(text) {
    if (this.closed) return;
    this.noticeEl.append(h('p', { class: 'notice' }, text));
  }

  setState(state) {
    if (this.state === 'ended') return;
    this.state = state;
    this.stateEl.dataset.state = state;
    this.stateEl.textContent = STATE_TEXT[state] || state;
  }

  updateControls() {
    const audio = this.local && this.local.getAudioTracks()[0];
    const video = this.local && this.local.getVideoTracks()[0];
    this.muteBtn.disabled = !audio;
    this.muteBtn.setAttribute('aria-pressed', String(!!audio && !audio.enabled));
    this.cameraBtn.disabled = !video;
    this.cameraBtn.setAttribute('aria-pressed', String(!!video && !video.enabled));
    this.switchBtn.hidden = !video || this.cameras.length < 2;
    this.localVideo.classList.toggle('off', !!video && !video.enabled);
  }

  toggleMute() {
    const t = this.local && this.local.getAudioTracks()[0];
    if (!t) return;
    t.enabled = !t.enabled;
    this.updateControls();
  }

  toggleCamera() {
    const t = this.local && this.local.getVideoTracks()[0];
    if (!t) return;
    t.enabled = !t.enabled; // the kiosk gets black frames, no renegotiation
    this.updateControls();
  }

  async findCameras() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      this.cameras = devices.filter((d) => d.kind === 'videoinput' && d.deviceId);
    } catch {
      this.cameras = [];
    }
    this.updateControls();
  }

  updateMirror() {
    const t = this.local && this.local.getVideoTracks()[0];
    const facing = t && t.getSettings ? t.getSettings().facingMode : undefined;
    this.localVideo.classList.toggle('mirror', facing !== 'environment');
  }

  // Next camera (front/rear on a phone): a new track replaces the sender's, no renegotiation.
  async switchCamera() {
    const old = this.local && this.local.getVideoTracks()[0];
    if (!old || this.cameras.length < 2) return;
    const now = old.getSettings().deviceId;
    const i = this.cameras.findIndex((c) => c.deviceId === now);
    const next = this.cameras[(i + 1) % this.cameras.length];
    this.switchBtn.disabled = true;
    const open = (deviceId) => navigator.mediaDevices.getUserMedia({ video: { ...CAMERA, facingMode: undefined, deviceId: { exact: deviceId } } });
    // Phones often cannot open both cameras at once: release the old one first.
    old.stop();
    let track;
    try {
      track = (await open(next.deviceId)).getVideoTracks()[0];
    } catch (err) {
      this.notify(`Could not switch the camera: ${errorText(err)}`);
      try {
        track = (await open(now)).getVideoTracks()[0];
      } catch {
        track = null;
      }
    }
    this.local.removeTrack(old);
    if (this.closed) {
      if (track) track.stop();
      return;
    }
    if (track) {
      track.enabled = old.enabled;
      this.local.addTrack(track);
    }
    const sender = this.pc && this.pc.getSenders().find((s) => s.track === old);
    if (sender) await sender.replaceTrack(track).catch((err) => this.notify(errorText(err)));
    this.localVideo.srcObject = this.local;
    this.play(this.localVideo);
    this.updateMirror();
    this.switchBtn.disabled = false;
    this.updateControls();
  }

  // ---------- snapshot ----------

  async snapshot() {
    const v = this.remoteVideo;
    this.snapStatus.textContent = '';
    this.snapError.textContent = '';
    if (!v.videoWidth || !v.videoHeight) {
      this.snapError.textContent = 'No video from the kiosk yet.';
      return;
    }
    this.snapBtn.disabled = true;
    try {
      const blob = await jpegOf(v);
      const url = `/api/v1/orgs/${seg(this.org)}/calls/${seg(this.id)}/snapshots`;
      await api('POST', url, blob);
      const at = new Date();
      const src = URL.createObjectURL(blob);
      this.blobUrls.push(src);
      this.snapList.prepend(
        h(
          'li',
          { 'data-testid': 'snapshot' },
          h('img', { src, alt: `Snapshot of ${place(this.kiosk, this.site)} taken at ${at.toLocaleTimeString()}` }),
        ),
      );
      this.snapStatus.textContent = `Snapshot saved at ${at.toLocaleTimeString()}.`;
    } catch (err) {
      if (!(err && err.handled)) this.snapError.textContent = `The snapshot was not saved: ${errorText(err)}`;
    } finally {
      this.snapBtn.disabled = false;
    }
  }

  // ---------- timer and call quality ----------

  tick() {
    this.timerEl.textContent = fmtClock(Date.now() - this.startedAt);
    if (this.pc && !this.closed) this.sample().catch(() => {});
  }

  async sample() {
    const report = await this.pc.getStats();
    let inbound = null;
    let pairId = null;
    let nominated = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'video') inbound = s;
      else if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') nominated = s;
    });
    const pair = (pairId && report.get(pairId)) || nominated;
    const localC = pair && report.get(pair.localCandidateId);
    const remoteC = pair && report.get(pair.remoteCandidateId);
    const prev = this.prevStats;
    const q = {
      at: Date.now(),
      bitrateKbps: null,
      lossPercent: null,
      fps: null,
      rttMs: pair && Number.isFinite(pair.currentRoundTripTime) ? Math.round(pair.currentRoundTripTime * 1000) : null,
      localCandidate: localC ? localC.candidateType : null,
      remoteCandidate: remoteC ? remoteC.candidateType : null,
      path: pathOf(localC, remoteC),
      framesDecoded: inbound ? inbound.framesDecoded ?? 0 : 0,
    };
    if (inbound) {
      q.fps = Number.isFinite(inbound.framesPerSecond) ? Math.round(inbound.framesPerSecond) : null;
      if (prev && prev.inbound && prev.inbound.id === inbound.id) {
        const dt = inbound.timestamp - prev.inbound.timestamp; // ms
        if (dt > 0) {
          q.bitrateKbps = Math.round(((inbound.bytesReceived - prev.inbound.bytesReceived) * 8) / dt); // bit/ms = kbit/s
          if (q.fps == null) q.fps = Math.round(((inbound.framesDecoded - prev.inbound.framesDecoded) * 1000) / dt);
        }
        const lost = (inbound.packetsLost || 0) - (prev.inbound.packetsLost || 0);
        const got = (inbound.packetsReceived || 0) - (prev.inbound.packetsReceived || 0);
        if (lost + got > 0) q.lossPercent = Math.max(0, Math.round((lost * 1000) / (lost + got)) / 10);
      }
    }
    this.prevStats = { inbound };
    this.quality = q;
    const show = (el, v, unit) => (el.textContent = v == null ? '—' : `${v.toLocaleString()} ${unit}`);
    show(this.q.bitrate, q.bitrateKbps, 'kbit/s');
    show(this.q.loss, q.lossPercent, '%');
    show(this.q.fps, q.fps, 'fps');
    show(this.q.rtt, q.rttMs, 'ms');
    this.q.path.textContent = q.path ? `${q.path} (${q.localCandidate} ↔ ${q.remoteCandidate})` : '—';
    this.qualityEl.dataset.path = q.path || '';
  }

  // ---------- the end ----------

  // The agent hangs up.
  hangUp() {
    this.send({ type: 'end', call: this.id });
    this.close('hung_up', 'agent');
  }

  // Local teardown; `by` is who ended it (kiosk, agent, cloud).
  close(reason, by) {
    if (this.closed) return;
    this.closed = true;
    this.state = 'ended';
    for (const t of this.timers) clearInterval(t);
    stopStream(this.local);
    if (this.pc) this.pc.close();
    for (const v of [this.remoteVideo, this.localVideo]) v.srcObject = null;
    for (const u of this.blobUrls) URL.revokeObjectURL(u);
    this.el.remove();
    if (current === this) current = null;
    this.onClosed({
      call: this.id,
      kiosk: this.kiosk,
      site: this.site,
      reason,
      by,
      durationMs: Date.now() - this.startedAt,
    });
  }
}

// "relay" if either side relays, else "srflx" if either is reflexive, else "host".
function pathOf(localC, remoteC) {
  if (!localC || !remoteC) return null;
  const types = [localC.candidateType, remoteC.candidateType];
  if (types.includes('relay')) return 'relay';
  if (types.includes('srflx') || types.includes('prflx')) return 'srflx';
  return 'host';
}

// The video's current frame as a JPEG within the server's limit.
async function jpegOf(video) {
  let w = video.videoWidth;
  let ht = video.videoHeight;
  for (;;) {
    const canvas = document.createElement('canvas');
    canvas.width = w;
    canvas.height = ht;
    canvas.getContext('2d').drawImage(video, 0, 0, w, ht);
    for (const quality of [0.92, 0.8, 0.6]) {
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality));
      if (!blob) throw new Error('The browser could not encode the picture.');
      if (blob.size <= SNAPSHOT_MAX) return blob;
    }
    w = Math.round(w * 0.7);
    ht = Math.round(ht * 0.7);
  }
}
