/**
 * A small typed event emitter: `on` returns its own unsubscribe function, so React effects and
 * tests can clean up in one line. A listener that throws does not stop the others; the error is
 * rethrown asynchronously so it still shows up in the console.
 */
export type Listener<T> = (value: T) => void;

export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  private listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Calls `fn` for every `event`; returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => this.off(event, fn);
  }

  /** Calls `fn` for the next `event` only. */
  once<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    const off = this.on(event, (value) => {
      off();
      fn(value);
    });
    return off;
  }

  /** Removes `fn` (or every listener of `event` when `fn` is omitted). */
  off<K extends keyof Events>(event: K, fn?: Listener<Events[K]>): void {
    if (!fn) this.listeners.delete(event);
    else this.listeners.get(event)?.delete(fn as Listener<never>);
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as Listener<Events[K]>)(value);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  protected listenerCount<K extends keyof Events>(event: K): number {
    return this.listeners.get(event)?.size ?? 0;
  }
}
