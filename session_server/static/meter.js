// A level meter: how loud one side's sound is, as a bar, from a WebAudio AnalyserNode.

const FLOOR_DB = -60; // quieter than this shows as an empty bar
const RELEASE = 0.92; // how fast the bar falls back: fast rise, slow fall, like a studio meter
const LOUD_PEAK = 0.9; // near full scale: the sound may distort

export class LevelMeter {
  #context;
  #element;
  #fill;
  #analyser;
  #samples;
  #source = null;
  #frame = 0;
  #level = 0;

  /** `element` holds a `.fill` child whose width follows the level (CSS variable --level). */
  constructor(context, element) {
    this.#context = context;
    this.#element = element;
    this.#analyser = context.createAnalyser();
    this.#analyser.fftSize = 2048;
    this.#samples = new Float32Array(this.#analyser.fftSize);
  }

  /** The level shown now, 0–100. */
  get level() {
    return this.#level;
  }

  /** Follow this stream's sound (replacing whatever was followed before). */
  follow(stream) {
    if (!stream || stream.getAudioTracks().length === 0) {
      // An analyser with nothing connected keeps its last samples: stop, or the bar freezes.
      this.stop();
      return;
    }
    this.#disconnect();
    this.#source = this.#context.createMediaStreamSource(stream);
    this.#source.connect(this.#analyser);
    if (!this.#frame) this.#frame = requestAnimationFrame(this.#tick);
  }

  stop() {
    this.#disconnect();
    cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    this.#paint(0, false);
  }

  #disconnect() {
    this.#source?.disconnect();
    this.#source = null;
  }

  #tick = () => {
    this.#analyser.getFloatTimeDomainData(this.#samples);
    let sum = 0;
    let peak = 0;
    for (const sample of this.#samples) {
      sum += sample * sample;
      peak = Math.max(peak, Math.abs(sample));
    }
    const rms = Math.sqrt(sum / this.#samples.length);
    const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
    const now = Math.max(0, Math.min(100, ((db - FLOOR_DB) / -FLOOR_DB) * 100));
    this.#paint(Math.max(now, this.#level * RELEASE), peak >= LOUD_PEAK);
    this.#frame = requestAnimationFrame(this.#tick);
  };

  #paint(level, loud) {
    this.#level = level < 0.5 ? 0 : level;
    this.#element.style.setProperty("--level", this.#level.toFixed(1));
    this.#element.setAttribute("aria-valuenow", String(Math.round(this.#level)));
    this.#element.classList.toggle("loud", loud);
  }
}
