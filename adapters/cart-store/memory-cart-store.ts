/**
 * The embedded cart store: carts in a Map, written through to a document collection when one is
 * given (the `carts` collection of the cart service: NeDB under DATA_DIR), so carts survive a
 * restart. Writes to one cart run one at a time, each checking its limits on the current state,
 * which makes them atomic within this process: the embedded store serves one cart-service
 * instance; several instances share carts through Redis.
 */
import type { Collection } from "../../mixins/collection";
import { CART_TTL_SECONDS, emptyCart, type BoughtLines, type CartStore, type CheckoutClaim, type LineLimits, type LineResult, type LineWrite, type MergeLine, type StoredCart } from "./cart-store";

interface Line {
	quantity: number;
	unitPrice: number | null;
	currency: string | null;
}

/** A checkout's claim on the cart: the order, and when its lease ends. */
interface CheckoutHold {
	orderId: string;
	until: number;
}

interface MemoryCart {
	lines: Map<string, Line>;
	promoCode: string | null;
	version: number;
	expiresAt: number;
	checkout: CheckoutHold | null;
}

/**
 * A change computed on a copy of the cart: the result, and whether the cart was written.
 * `holdOnly`: only the checkout claim changed, so the version (what the cart holds) stays.
 */
type Change<T> = { result: T; written: boolean; holdOnly?: boolean };

export interface MemoryCartStoreOptions {
	/** Write-through persistence; carts live in memory only without it. */
	persist?: Collection;
	ttlSeconds?: number;
	/** Clock, for expiry tests. */
	now?: () => number;
}

export class MemoryCartStore implements CartStore {
	private carts = new Map<string, MemoryCart>();
	private queues = new Map<string, Promise<unknown>>();
	private readonly ttlMs: number;
	private readonly now: () => number;
	private sweeper = setInterval(() => this.sweep(), 3600_000).unref();

	constructor(private opts: MemoryCartStoreOptions = {}) {
		this.ttlMs = (opts.ttlSeconds ?? CART_TTL_SECONDS) * 1000;
		this.now = opts.now ?? Date.now;
	}

	/** Loads the persisted carts that have not expired. */
	async load(): Promise<void> {
		if (!this.opts.persist) return;
		const docs = await this.opts.persist.find({ expiresAt: { $gt: new Date(this.now()) } });
		for (const d of docs) {
			const lines = new Map<string, Line>((d.lines as Array<{ variantId: string } & Line>).map((l) => [l.variantId, { quantity: l.quantity, unitPrice: l.unitPrice ?? null, currency: l.currency ?? null }]));
			const checkout = d.checkout ? { orderId: d.checkout.orderId, until: new Date(d.checkout.until).getTime() } : null;
			this.carts.set(d.id, { lines, promoCode: d.promoCode ?? null, version: d.version ?? 0, expiresAt: new Date(d.expiresAt).getTime(), checkout });
		}
	}

	async get(owner: string): Promise<StoredCart> {
		const cart = this.current(owner);
		return cart ? storedCart(cart) : emptyCart();
	}

	addItem(owner: string, line: LineWrite, limits: LineLimits & { maxLines: number }): Promise<LineResult> {
		return this.change<LineResult>(owner, (cart) => {
			const current = cart.lines.get(line.variantId)?.quantity ?? 0;
			const want = current + line.quantity;
			const refusal = want > limits.maxQuantity ? "quantity" : want > limits.available ? "stock" : current === 0 && cart.lines.size >= limits.maxLines ? "lines" : null;
			if (refusal) return { result: { ok: false, reason: refusal, quantity: current }, written: false };
			cart.lines.set(line.variantId, { quantity: want, unitPrice: line.unitPrice, currency: line.currency });
			return { result: { ok: true, quantity: want, version: cart.version + 1 }, written: true };
		});
	}

	setQuantity(owner: string, line: LineWrite, limits: LineLimits): Promise<LineResult> {
		return this.change<LineResult>(owner, (cart) => {
			const current = cart.lines.get(line.variantId)?.quantity ?? 0;
			const refusal = current === 0 ? "missing" : line.quantity > limits.maxQuantity ? "quantity" : line.quantity > limits.available ? "stock" : null;
			if (refusal) return { result: { ok: false, reason: refusal, quantity: current }, written: false };
			cart.lines.set(line.variantId, { quantity: line.quantity, unitPrice: line.unitPrice, currency: line.currency });
			return { result: { ok: true, quantity: line.quantity, version: cart.version + 1 }, written: true };
		});
	}

	removeItem(owner: string, variantId: string): Promise<boolean> {
		return this.change(owner, (cart) => {
			const removed = cart.lines.delete(variantId);
			return { result: removed, written: removed };
		});
	}

	setPromo(owner: string, code: string | null): Promise<number> {
		return this.change(owner, (cart) => {
			cart.promoCode = code;
			return { result: cart.version + 1, written: true };
		});
	}

	clear(owner: string, version?: number, releaseFor?: string, bought?: BoughtLines): Promise<boolean> {
		return this.change(owner, (cart) => {
			const released = releaseFor != null && cart.checkout?.orderId === releaseFor;
			if (released) cart.checkout = null;
			// Another checkout holds the cart now (this one outlived its lease): what it bought is not this one's to empty.
			const heldByAnother = releaseFor != null && !!cart.checkout && cart.checkout.orderId !== releaseFor && cart.checkout.until > this.now();
			if (heldByAnother || (version != null && version !== cart.version && !bought)) return { result: false, written: released, holdOnly: true };
			if (version != null && version !== cart.version && bought) {
				// Changed while it was bought (another tab): what was bought comes off, what was added stays.
				for (const b of bought.lines) {
					const line = cart.lines.get(b.variantId);
					if (!line) continue;
					if (line.quantity <= b.quantity) cart.lines.delete(b.variantId);
					else line.quantity -= b.quantity;
				}
				if (bought.promoCode !== null && cart.promoCode === bought.promoCode) cart.promoCode = null;
				return { result: true, written: true };
			}
			cart.lines.clear();
			cart.promoCode = null;
			return { result: true, written: true };
		});
	}

	claimCheckout(owner: string, orderId: string, leaseMs: number): Promise<CheckoutClaim> {
		return this.change<CheckoutClaim>(owner, (cart) => {
			const holder = cart.checkout && cart.checkout.until > this.now() ? cart.checkout.orderId : null;
			if (holder && holder !== orderId) return { result: { claimed: false, heldBy: holder }, written: false };
			cart.checkout = { orderId, until: this.now() + leaseMs };
			return { result: { claimed: true, cart: storedCart(cart) }, written: true, holdOnly: true };
		});
	}

	releaseCheckout(owner: string, orderId: string): Promise<boolean> {
		return this.change(owner, (cart) => {
			if (cart.checkout?.orderId !== orderId) return { result: false, written: false };
			cart.checkout = null;
			return { result: true, written: true, holdOnly: true };
		});
	}

	take(owner: string): Promise<StoredCart> {
		return this.serial(owner, async () => {
			const taken = await this.get(owner);
			if (this.carts.has(owner)) {
				await this.opts.persist?.removeOne({ id: owner });
				this.carts.delete(owner);
			}
			return taken;
		});
	}

	mergeLines(owner: string, lines: MergeLine[], maxLines: number): Promise<number> {
		return this.change(owner, (cart) => {
			let changed = 0;
			for (const line of lines) {
				const current = cart.lines.get(line.variantId);
				const have = current?.quantity ?? 0;
				const want = Math.min(have + line.quantity, line.cap);
				if (want <= have || (!current && cart.lines.size >= maxLines)) continue;
				cart.lines.set(line.variantId, current?.unitPrice != null ? { ...current, quantity: want } : { quantity: want, unitPrice: line.unitPrice, currency: line.currency });
				changed++;
			}
			return { result: changed, written: changed > 0 };
		});
	}

	async close(): Promise<void> {
		clearInterval(this.sweeper);
		await Promise.all([...this.queues.values()].map((q) => q.catch(() => undefined)));
	}

	/** The live cart, or undefined when there is none or it expired. */
	private current(owner: string): MemoryCart | undefined {
		const cart = this.carts.get(owner);
		if (cart && cart.expiresAt <= this.now()) {
			this.carts.delete(owner);
			return undefined;
		}
		return cart;
	}

	/**
	 * Applies `fn` to a copy of the cart; when it wrote, the version moves on (unless only the claim
	 * changed), the expiry is refreshed, and the copy is persisted (one write) before it replaces the
	 * cart in memory. Changes of one cart run one at a time, so a claim's check and write are one step.
	 */
	private change<T>(owner: string, fn: (cart: MemoryCart) => Change<T>): Promise<T> {
		return this.serial(owner, async () => {
			const cur = this.current(owner);
			const draft: MemoryCart = cur
				? { lines: new Map([...cur.lines].map(([k, v]) => [k, { ...v }])), promoCode: cur.promoCode, version: cur.version, expiresAt: cur.expiresAt, checkout: cur.checkout }
				: { lines: new Map(), promoCode: null, version: 0, expiresAt: 0, checkout: null };
			const { result, written, holdOnly } = fn(draft);
			if (!written) return result;
			if (!holdOnly) draft.version++;
			draft.expiresAt = this.now() + this.ttlMs;
			await this.save(owner, draft);
			this.carts.set(owner, draft);
			return result;
		});
	}

	private async save(owner: string, cart: MemoryCart): Promise<void> {
		if (!this.opts.persist) return;
		const { lines, promoCode, version } = storedCart(cart);
		const checkout = cart.checkout && { orderId: cart.checkout.orderId, until: new Date(cart.checkout.until) };
		await this.opts.persist.updateOne({ id: owner }, { $set: { lines, promoCode, version, expiresAt: new Date(cart.expiresAt), checkout } }, { upsert: true });
	}

	/** Runs the tasks of one owner one after another, so each sees the previous one's result. */
	private serial<T>(owner: string, task: () => Promise<T>): Promise<T> {
		const previous = this.queues.get(owner) ?? Promise.resolve();
		const run = previous.then(task);
		const tail = run.catch(() => undefined);
		this.queues.set(owner, tail);
		void tail.then(() => {
			if (this.queues.get(owner) === tail) this.queues.delete(owner);
		});
		return run;
	}

	private sweep() {
		const now = this.now();
		for (const [owner, cart] of this.carts) if (cart.expiresAt <= now) this.carts.delete(owner);
	}
}

function storedCart(cart: MemoryCart): StoredCart {
	return {
		lines: [...cart.lines].map(([variantId, l]) => ({ variantId, quantity: l.quantity, unitPrice: l.unitPrice, currency: l.currency })),
		promoCode: cart.promoCode,
		version: cart.version,
	};
}
