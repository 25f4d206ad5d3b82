/**
 * Encoded answers of public, cached actions, kept by the gateway so a repeated request skips the
 * action call (its context, middlewares, metrics and cacher lookup) altogether. Each entry is tagged
 * with the service whose cache-clean broadcast drops it; entries are bounded in number and expire
 * after `maxAgeMs`, in case a broadcast is lost. An answer computed while its service's cache was
 * cleaned is not stored: it may predate the change.
 */
export interface ResponseCacheOptions {
	maxEntries: number;
	maxAgeMs: number;
	now?: () => number;
}

interface Entry {
	body: Buffer;
	tag: string;
	expiresAt: number;
}

export class ResponseCache {
	private readonly entries = new Map<string, Entry>();
	private readonly generations = new Map<string, number>();
	private readonly now: () => number;

	constructor(private readonly opts: ResponseCacheOptions) {
		this.now = opts.now ?? Date.now;
	}

	get size(): number {
		return this.entries.size;
	}

	get(key: string): Buffer | undefined {
		const e = this.entries.get(key);
		if (!e) return undefined;
		if (e.expiresAt <= this.now()) {
			this.entries.delete(key);
			return undefined;
		}
		return e.body;
	}

	/** Taken before computing an answer; `set` stores it only if `tag` was not cleaned since. */
	generation(tag: string): number {
		return this.generations.get(tag) ?? 0;
	}

	set(key: string, body: Buffer, tag: string, generation: number): void {
		if (generation !== this.generation(tag) || this.opts.maxEntries <= 0) return;
		this.entries.delete(key);
		// Oldest first: a Map iterates in insertion order.
		if (this.entries.size >= this.opts.maxEntries) this.entries.delete(this.entries.keys().next().value!);
		this.entries.set(key, { body, tag, expiresAt: this.now() + this.opts.maxAgeMs });
	}

	/** The service `tag` changed its data: its answers go. */
	clean(tag: string): void {
		this.generations.set(tag, this.generation(tag) + 1);
		for (const [key, e] of this.entries) if (e.tag === tag) this.entries.delete(key);
	}
}
