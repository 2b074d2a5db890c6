// Reactions: the three kinds a class or a care home can send, and showing one that arrives.

export const REACTIONS = {
  clap: { emoji: "👏", word: "Clap", sentence: "a clap" },
  heart: { emoji: "❤️", word: "Heart", sentence: "a heart" },
  wave: { emoji: "👋", word: "Wave", sentence: "a wave" },
};

export function isReactionKind(kind) {
  return Object.hasOwn(REACTIONS, kind);
}

/** Shows an arriving reaction large over the whole page for a few seconds. */
export class ReactionDisplay {
  #root;
  #emoji;
  #words;
  #milliseconds;
  #timer = 0;

  constructor(root, emoji, words, seconds = 4) {
    this.#root = root;
    this.#emoji = emoji;
    this.#words = words;
    this.#milliseconds = seconds * 1000;
  }

  show(kind, from) {
    const reaction = REACTIONS[kind];
    if (!reaction) return;
    this.#emoji.textContent = reaction.emoji;
    this.#words.textContent = `${from} sent ${reaction.sentence}`;
    this.#root.dataset.kind = kind;
    // Restart the entrance animation when a second reaction follows quickly.
    this.#emoji.style.animation = "none";
    void this.#emoji.offsetWidth;
    this.#emoji.style.animation = "";
    this.#root.hidden = false;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.clear(), this.#milliseconds);
  }

  clear() {
    clearTimeout(this.#timer);
    this.#root.hidden = true;
  }
}
