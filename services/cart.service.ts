/**
 * Carts (user and guest) and promotion codes. A cart holds only variant ids and quantities (in
 * the cart store: Redis or embedded); prices, names and stock come from the products service each
 * time a cart is shown. Promotion uses are consumed by the orders service when an order is paid; how
 * they are taken and given back is in mixins/promotion-uses.mixin.ts.
 */
import crypto from "node:crypto";
import type { Context, ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { HeldEventsMixin, type HeldEventsMethods } from "../mixins/held-events.mixin";
import { DbMixin, type Collections } from "../mixins/db.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import type { ShopMeta } from "../mixins/types";
import { isIssuedCartId, issueCartId } from "../lib/cart-id";
import { jwtSecret } from "../lib/jwt";
import { readConfig, shippingRatesOf } from "../lib/config";
import { rateFor, shippingFor, type ShippingRates } from "../lib/checkout-totals";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { DEFAULT_CURRENCY } from "../lib/money";
import { ConflictError, InsufficientStockError, NotFoundError, UnprocessableError, invalidField } from "../lib/errors";
import { priceCart, seenPrice, toSnapshot, type CatalogVariant, type PricedCart } from "../lib/cart-pricing";
import { checkPromotion, normalizeCode, promoRejected, promotionDiscount, promotionInputProblems, PROMO_CODE_PATTERN, type Promotion } from "../lib/promotions";
import { PromotionUseMixin, promotionUseCollections, type PromotionDoc, type PromotionUseMethods } from "../mixins/promotion-uses.mixin";
import { CHECKOUT_LEASE_MS, createCartStore, type BoughtLines, type CartStore, type LineResult, type StoredCart } from "../adapters/cart-store";
import { isoDateRule } from "../lib/param-rules";
import { GUEST_CART_NOTES } from "../lib/openapi";

/** Most units of one variant in a cart, and most lines in a cart. */
const MAX_QUANTITY = 99;
const MAX_LINES = 100;
/**
 * A login's merge of a guest cart, or a restore of an unpaid order's lines, keeps every line, past
 * MAX_LINES up to this (both carts held at most MAX_LINES): dropping some would lose them unseen.
 * A cart past MAX_LINES takes no new line until some go.
 */
const MAX_MERGED_LINES = 2 * MAX_LINES;

type Ctx<P = Record<string, never>> = Context<P, ShopMeta>;

/** Whose cart a request works on; user and guest keys live in separate namespaces. */
interface Owner {
	key: string;
	userId?: string;
}

interface CartMethods extends PromotionUseMethods, HeldEventsMethods {
	ownerOf(ctx: Ctx<unknown>): Owner;
	knownOwner(ctx: Ctx<unknown>): Owner | null;
	loadVariants(ctx: Ctx<unknown>, ids: string[], known?: CatalogVariant[]): Promise<Map<string, CatalogVariant>>;
	sellableVariant(ctx: Ctx<unknown>, variantId: string): Promise<CatalogVariant>;
	priceOwnerCart(ctx: Ctx<unknown>, ownerKey: string, known?: CatalogVariant[]): Promise<PricedCart & { version: number }>;
	priceStoredCart(ctx: Ctx<unknown>, stored: StoredCart, known?: CatalogVariant[]): Promise<PricedCart & { version: number }>;
	showCart(ctx: Ctx<unknown>, owner: Owner, known?: CatalogVariant[]): Promise<Record<string, unknown>>;
}

interface CartVars {
	db: Collections;
	store: CartStore;
	shippingRates: ShippingRates;
}

const variantIdParam = { type: "string", min: 1, max: 64 };
const quantityParam = { type: "number", integer: true, min: 1, max: MAX_QUANTITY };

/** A refused line write, as the status API.md gives it. */
function lineRefused(res: Extract<LineResult, { ok: false }>, variantId: string, requested: number, available: number): Error {
	switch (res.reason) {
		case "quantity":
			return invalidField("quantity", `A cart line holds at most ${MAX_QUANTITY} units (this one has ${res.quantity})`, "numberMax");
		case "stock":
			return new InsufficientStockError({ variantId, requested, available });
		case "lines":
			return new ConflictError(`A cart holds at most ${MAX_LINES} lines`, "CART_FULL", { maxLines: MAX_LINES });
		default:
			return new NotFoundError("Cart item", { variantId });
	}
}

function promotionView(p: PromotionDoc) {
	const { id, code, type, value, minSubtotal, maxUses, usedCount, expiresAt, active, currency, createdAt } = p;
	return { id, code, type, value, minSubtotal, maxUses, usedCount, expiresAt: expiresAt ? new Date(expiresAt).toISOString() : null, active, currency, createdAt: new Date(createdAt).toISOString() };
}

/**
 * The cart as API.md shows it: every line with its flags, totals of the purchasable ones. `total` is
 * the goods after the discount; `shipping` and `checkoutTotal` are what a checkout of it adds and
 * charges now (the number a client sends back as the checkout's `expectedTotal`).
 */
function cartView(cart: PricedCart, rates: ShippingRates) {
	const { items, subtotal, discount, total, currency, promoCode, promoProblem } = cart;
	const buyable = items.some((i) => !i.archived && !i.currencyMismatch);
	const shipping = buyable ? shippingFor(total, rateFor(rates, currency)) : 0;
	return { items, subtotal, discount, total, shipping, checkoutTotal: total + shipping, currency, promoCode, promoProblem };
}

/** A guest's cart, its id sent back in X-Cart-Id. */
function guestOwner(ctx: Ctx<unknown>, cartId: string): Owner {
	ctx.meta.$responseHeaders = { ...ctx.meta.$responseHeaders, "X-Cart-Id": cartId };
	return { key: `g:${cartId}` };
}

const CartService: ServiceSchema<Record<string, any>, CartMethods, CartVars> = {
	name: "cart",
	// PromotionUseMixin first: it starts once DbMixin has opened the collections.
	mixins: [
		PromotionUseMixin,
		HeldEventsMixin as Partial<ServiceSchema>,
		DbMixin("cart", {
			promotions: {
				fields: { code: String, type: String, value: Number, minSubtotal: Number, maxUses: Number, usedCount: Number, expiresAt: Date, active: Boolean, currency: String, createdAt: Date },
				indexes: [{ fields: { code: 1 }, unique: true }],
			},
			...promotionUseCollections,
			// The embedded cart store writes through to here so carts survive a restart (unused with Redis).
			carts: {
				// checkout: the claim of the order checking the cart out, {orderId, until}, or null.
				fields: { lines: [{ variantId: String, quantity: Number, unitPrice: Number, currency: String }], promoCode: String, version: Number, expiresAt: Date, checkout: Object },
				indexes: [{ fields: { expiresAt: 1 }, expireAfterSeconds: 0 }],
			},
		}),
		HealthMixin,
	],
	settings: {
		rest: "/",
		/** How long a checkout's claim on a cart lasts when nothing ends it (tests shorten it). */
		checkoutLeaseMs: CHECKOUT_LEASE_MS,
	},

	actions: {
		getCart: {
			rest: "GET /cart",
			openapi: { ...GUEST_CART_NOTES, response: "Cart" },
			auth: "optional",
			params: { $$strict: "remove" },
			handler(ctx: Ctx) {
				return this.showCart(ctx, this.ownerOf(ctx));
			},
		},

		addItem: {
			rest: "POST /cart/items",
			openapi: { ...GUEST_CART_NOTES, success: 201, response: "Cart", responses: { 404: "Unknown variant", 409: "Not enough stock, or the cart is full" } },
			auth: "optional",
			params: { $$strict: "remove", variantId: variantIdParam, quantity: quantityParam },
			async handler(ctx: Ctx<{ variantId: string; quantity: number }>) {
				const { variantId, quantity } = ctx.params;
				const owner = this.ownerOf(ctx);
				const variant = await this.sellableVariant(ctx, variantId);
				const limits = { maxQuantity: MAX_QUANTITY, available: variant.stock, maxLines: MAX_LINES };
				const res = await this.store.addItem(owner.key, { variantId, quantity, unitPrice: variant.price, currency: variant.currency }, limits);
				if (!res.ok) throw lineRefused(res, variantId, res.quantity + quantity, variant.stock);
				// The guest cart id is a bearer secret: analytics gets a stable digest of it instead.
				const cartId = crypto.createHash("sha256").update(owner.key).digest("base64url").slice(0, 22);
				void this.emitCounted(ctx, "cart.item_added", { userId: owner.userId, cartId, variantId, productId: variant.productId, quantity, eventId: crypto.randomUUID() });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/cart`;
				return this.showCart(ctx, owner, [variant]);
			},
		},

		updateItem: {
			rest: "PATCH /cart/items/:variantId",
			openapi: { ...GUEST_CART_NOTES, response: "Cart", responses: { 409: "Not enough stock" } },
			auth: "optional",
			params: { $$strict: "remove", variantId: variantIdParam, quantity: { ...quantityParam, min: 0 } },
			async handler(ctx: Ctx<{ variantId: string; quantity: number }>) {
				const { variantId, quantity } = ctx.params;
				const owner = this.ownerOf(ctx);
				if (quantity === 0) {
					await this.store.removeItem(owner.key, variantId);
					return this.showCart(ctx, owner);
				}
				const variant = await this.sellableVariant(ctx, variantId);
				const res = await this.store.setQuantity(owner.key, { variantId, quantity, unitPrice: variant.price, currency: variant.currency }, { maxQuantity: MAX_QUANTITY, available: variant.stock });
				if (!res.ok) throw lineRefused(res, variantId, quantity, variant.stock);
				return this.showCart(ctx, owner);
			},
		},

		removeItem: {
			rest: "DELETE /cart/items/:variantId",
			openapi: { ...GUEST_CART_NOTES, response: "Cart" },
			auth: "optional",
			params: { $$strict: "remove", variantId: variantIdParam },
			async handler(ctx: Ctx<{ variantId: string }>) {
				const owner = this.ownerOf(ctx);
				await this.store.removeItem(owner.key, ctx.params.variantId);
				return this.showCart(ctx, owner);
			},
		},

		emptyCart: {
			rest: "DELETE /cart",
			openapi: { headers: GUEST_CART_NOTES.headers, success: 204 },
			auth: "optional",
			params: { $$strict: "remove" },
			async handler(ctx: Ctx) {
				// A guest without a cart of this shop's has nothing to empty: none is made (each such call stored
				// an empty cart for 7 days, and anyone may call it).
				const owner = this.knownOwner(ctx);
				if (owner) await this.store.clear(owner.key);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		applyPromo: {
			rest: "POST /cart/promo",
			openapi: { response: "Cart" },
			auth: "required",
			params: { $$strict: "remove", code: { type: "string", min: 1, max: 64 } },
			async handler(ctx: Ctx<{ code: string }>) {
				const owner = this.ownerOf(ctx);
				const code = normalizeCode(ctx.params.code);
				const [cart, promotion] = await Promise.all([this.priceOwnerCart(ctx, owner.key), this.findPromotion(code, "checked")]);
				// Applying checks every rule against the cart now; the use is only taken when an order is paid.
				const verdict = checkPromotion(promotion, { subtotal: cart.subtotal, currency: cart.currency });
				if (!verdict.ok) throw promoRejected(verdict);
				await this.store.setPromo(owner.key, code);
				return this.showCart(ctx, owner);
			},
		},

		removePromo: {
			rest: "DELETE /cart/promo",
			openapi: { response: "Cart" },
			auth: "required",
			params: { $$strict: "remove" },
			async handler(ctx: Ctx) {
				const owner = this.ownerOf(ctx);
				await this.store.setPromo(owner.key, null);
				return this.showCart(ctx, owner);
			},
		},

		createPromotion: {
			rest: "POST /promotions",
			openapi: { success: 201, response: "Promotion", responses: { 409: "Code already exists" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				code: { type: "string", pattern: PROMO_CODE_PATTERN },
				type: { type: "enum", values: ["percent", "fixed"] },
				value: { type: "number", integer: true, min: 1, max: 1e9 },
				minSubtotal: { type: "number", integer: true, min: 0, max: 1e9, optional: true },
				maxUses: { type: "number", integer: true, min: 1, max: 1e9, optional: true, nullable: true },
				expiresAt: isoDateRule({ optional: true, nullable: true }),
				active: { type: "boolean", optional: true },
				currency: { type: "string", pattern: /^[A-Z]{3}$/, optional: true },
			},
			async handler(ctx: Ctx<Omit<Promotion, "usedCount" | "minSubtotal" | "maxUses" | "active" | "currency"> & Partial<Promotion>>) {
				const p = ctx.params;
				const problems = promotionInputProblems(p);
				if (problems.length) throw new UnprocessableError("Invalid promotion", problems);
				const created = await this.db.promotions.insert({
					code: normalizeCode(p.code),
					type: p.type,
					value: p.value,
					minSubtotal: p.minSubtotal ?? 0,
					maxUses: p.maxUses ?? null,
					usedCount: 0,
					expiresAt: p.expiresAt ?? null,
					active: p.active ?? true,
					currency: p.currency ?? DEFAULT_CURRENCY,
					createdAt: new Date(),
				});
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/promotions/${encodeURIComponent(created.code)}`;
				return promotionView(created as PromotionDoc);
			},
		},

		listPromotions: {
			rest: "GET /promotions",
			openapi: { response: { list: "Promotion" } },
			roles: ["admin"],
			params: { $$strict: "remove", ...pageParams, active: { type: "boolean", convert: true, optional: true } },
			async handler(ctx: Ctx<{ page?: number; pageSize?: number; active?: boolean }>) {
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const query = ctx.params.active === undefined ? {} : { active: ctx.params.active };
				const [rows, total] = await this.db.promotions.findWithCount(query, { sort: { createdAt: -1 }, offset: w.offset, limit: w.limit });
				// Each row's use count from its slots, as the single view shows it: a page is at most 100 counts.
				const counted = await Promise.all(rows.map((p) => this.withUses(p as PromotionDoc, "exact")));
				return toPage(counted.map((p) => promotionView(p!)), total, w.page, w.pageSize);
			},
		},

		getPromotion: {
			rest: "GET /promotions/:code",
			openapi: { response: "Promotion" },
			roles: ["admin"],
			params: { code: { type: "string", min: 1, max: 64 } },
			async handler(ctx: Ctx<{ code: string }>) {
				const promo = await this.findPromotion(normalizeCode(ctx.params.code), "exact");
				if (!promo) throw new NotFoundError("Promotion");
				return promotionView(promo);
			},
		},

		updatePromotion: {
			rest: "PATCH /promotions/:code",
			openapi: { response: "Promotion", responses: { 409: "maxUses below the uses the code holds now (PROMO_LIMIT_BELOW_USES)" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				code: { type: "string", min: 1, max: 64 },
				active: { type: "boolean", optional: true },
				maxUses: { type: "number", integer: true, min: 1, max: 1e9, optional: true, nullable: true },
				expiresAt: isoDateRule({ optional: true, nullable: true }),
			},
			async handler(ctx: Ctx<{ code: string; active?: boolean; maxUses?: number | null; expiresAt?: Date | null }>) {
				const { code, ...changes } = ctx.params;
				const set = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined));
				const { maxUses } = changes;
				const belowUses = (held: number) => new ConflictError(`${held} orders hold a use of this code: the limit cannot go below ${held}`, "PROMO_LIMIT_BELOW_USES", { maxUses, held });
				let previous: number | null = null;
				if (typeof maxUses === "number") {
					const current = await this.findPromotion(normalizeCode(code));
					if (!current) throw new NotFoundError("Promotion");
					previous = current.maxUses ?? null;
					// A limit below the uses orders hold now could not be kept: those orders keep their discount.
					const held = (await this.heldUses(current.id)).length;
					if (held > maxUses) throw belowUses(held);
				}
				const promo = Object.keys(set).length
					? await this.db.promotions.updateOne({ code: normalizeCode(code) }, { $set: set })
					: await this.findPromotion(normalizeCode(code));
				if (!promo) throw new NotFoundError("Promotion");
				if (typeof maxUses === "number") {
					await this.packSlots(promo.id, maxUses);
					// Checkouts that read the old limit took uses meanwhile (slots valid under both): more than the
					// new limit holds now. The old limit stands again, and the admin hears why.
					const held = (await this.heldUses(promo.id)).length;
					if (held > maxUses) {
						await this.db.promotions.updateOne({ id: promo.id, maxUses }, { $set: { maxUses: previous } });
						throw belowUses(held);
					}
				}
				return promotionView((await this.withUses(promo as PromotionDoc, "exact"))!);
			},
		},

		// ---- internal actions (docs/services.md § cart) ----

		snapshot: {
			visibility: "public",
			params: { userId: "string", claimFor: { type: "string", min: 1, max: 100, optional: true } },
			async handler(ctx: Ctx<{ userId: string; claimFor?: string }>) {
				const { userId, claimFor } = ctx.params;
				const owner = `u:${userId}`;
				let stored: StoredCart;
				if (claimFor) {
					// One checkout of a cart at a time: two at once (a double click, two tabs) would both buy it.
					const claim = await this.store.claimCheckout(owner, claimFor, this.settings.checkoutLeaseMs);
					// The holder is named: orders, which knows whether that checkout still runs, may let a stale claim go.
					if (!claim.claimed) throw new ConflictError("Another checkout of this cart is in progress", "CHECKOUT_IN_PROGRESS", { heldBy: claim.heldBy });
					stored = claim.cart;
				} else {
					stored = await this.store.get(owner);
				}
				const cart = await this.priceStoredCart(ctx, stored);
				return toSnapshot(cart, cart.version);
			},
		},

		clear: {
			visibility: "public",
			params: {
				userId: "string",
				version: { type: "number", integer: true, min: 0, optional: true },
				orderId: { type: "string", min: 1, max: 100, optional: true },
				// A checkout's snapshot: a cart changed since `version` (another tab) loses what was bought, not all.
				bought: {
					type: "object",
					optional: true,
					strict: "remove",
					props: {
						lines: { type: "array", max: MAX_MERGED_LINES, items: { type: "object", strict: "remove", props: { variantId: variantIdParam, quantity: { type: "number", integer: true, min: 1 } } } },
						promoCode: { type: "string", nullable: true },
					},
				},
			},
			async handler(ctx: Ctx<{ userId: string; version?: number; orderId?: string; bought?: BoughtLines }>) {
				const { userId, version, orderId, bought } = ctx.params;
				return { cleared: await this.store.clear(`u:${userId}`, version, orderId, bought) };
			},
		},

		releaseCheckout: {
			visibility: "public",
			params: { userId: "string", orderId: { type: "string", min: 1, max: 100 } },
			async handler(ctx: Ctx<{ userId: string; orderId: string }>) {
				return { released: await this.store.releaseCheckout(`u:${ctx.params.userId}`, ctx.params.orderId) };
			},
		},

		/**
		 * Puts an unpaid order's lines (and code) back into the customer's cart, which its checkout emptied.
		 * A line gets back up to the quantity bought (never more, so a repeated restore changes nothing, and
		 * units the customer added again since are not doubled), within today's stock; archived products stay
		 * out. The code comes back only to a cart without one.
		 */
		restore: {
			visibility: "public",
			params: {
				userId: "string",
				items: {
					type: "array", min: 1, max: MAX_MERGED_LINES,
					items: { type: "object", strict: "remove", props: { variantId: variantIdParam, quantity: { type: "number", integer: true, min: 1 }, unitPrice: { type: "number", integer: true, min: 0, optional: true } } },
				},
				/** The order's currency: that of the items' unitPrice. */
				currency: { type: "string", length: 3, optional: true },
				promoCode: { type: "string", min: 1, max: 64, optional: true },
			},
			async handler(ctx: Ctx<{ userId: string; items: Array<{ variantId: string; quantity: number; unitPrice?: number }>; currency?: string; promoCode?: string }>) {
				const { userId, items, currency, promoCode } = ctx.params;
				const owner = `u:${userId}`;
				const variants = await this.loadVariants(ctx, items.map((l) => l.variantId));
				const lines = items.flatMap((l) => {
					const v = variants.get(l.variantId);
					const cap = Math.min(l.quantity, MAX_QUANTITY, v?.stock ?? 0);
					// At the price the order was placed at: a price changed since is flagged, as for any line.
					return v?.isActive && cap > 0 ? [{ variantId: l.variantId, quantity: cap, ...seenPrice({ unitPrice: l.unitPrice, currency }, v), cap }] : [];
				});
				const restored = lines.length ? await this.store.mergeLines(owner, lines, MAX_MERGED_LINES) : 0;
				let codeRestored = false;
				if (promoCode) {
					const cart = await this.store.get(owner);
					// A code the customer chose meanwhile is theirs to keep. (A code set between this read and the
					// write below is replaced: a cosmetic race, the checkout prices whatever code the cart holds.)
					if (!cart.promoCode && cart.lines.length) {
						await this.store.setPromo(owner, promoCode);
						codeRestored = true;
					}
				}
				return { restored, promoCode: codeRestored };
			},
		},

		/** The cart of a user who deleted their account, gone (idempotent). */
		forgetUser: {
			visibility: "public",
			params: { userId: "string" },
			async handler(ctx: Ctx<{ userId: string }>) {
				await this.store.take(`u:${ctx.params.userId}`);
				return { forgotten: true };
			},
		},

		merge: {
			visibility: "public",
			params: { guestCartId: "string", userId: "string" },
			async handler(ctx: Ctx<{ guestCartId: string; userId: string }>) {
				const { guestCartId, userId } = ctx.params;
				if (!isIssuedCartId(guestCartId, jwtSecret())) return { merged: 0 };
				const guestKey = `g:${guestCartId}`;
				// Taken (read and deleted at once) first, so two logins with one guest cart merge it once.
				const guest = await this.store.take(guestKey);
				if (!guest.lines.length) return { merged: 0 };
				try {
					const variants = await this.loadVariants(ctx, guest.lines.map((l) => l.variantId));
					// Every guest line is kept, as the customer's own cart keeps it: summed and capped by stock, but
					// one sold out, archived or gone meanwhile is summed uncapped and flagged there (a cap of 0 would drop it).
					const lines = guest.lines.map((l) => {
						const v = variants.get(l.variantId);
						const cap = v?.isActive && v.stock > 0 ? Math.min(MAX_QUANTITY, v.stock) : MAX_QUANTITY;
						return { variantId: l.variantId, quantity: l.quantity, ...seenPrice(l, v), cap };
					});
					// New lines past the user's room stay in the guest cart (its id still shows them), never dropped.
					const owner = `u:${userId}`;
					const held = new Set((await this.store.get(owner)).lines.map((l) => l.variantId));
					let room = MAX_MERGED_LINES - held.size;
					const fits = lines.filter((l) => held.has(l.variantId) || room-- > 0);
					const left = lines.filter((l) => !fits.includes(l));
					const merged = await this.store.mergeLines(owner, fits, MAX_MERGED_LINES);
					if (left.length) await this.store.mergeLines(guestKey, left.map((l) => ({ ...l, cap: MAX_QUANTITY })), MAX_LINES);
					return { merged, ...(left.length ? { keptInGuestCart: left.length } : {}) };
				} catch (err) {
					// The catalog did not answer: put the guest cart back so a later login can merge it.
					const back = guest.lines.map((l) => ({ variantId: l.variantId, quantity: l.quantity, unitPrice: l.unitPrice ?? 0, currency: l.currency ?? "", cap: MAX_QUANTITY }));
					await this.store.mergeLines(guestKey, back, MAX_LINES).catch(() => undefined);
					throw err;
				}
			},
		},

		quotePromo: {
			visibility: "public",
			params: {
				code: { type: "string", min: 1, max: 64 },
				subtotal: { type: "number", integer: true, min: 0 },
				currency: { type: "string", optional: true },
			},
			async handler(ctx: Ctx<{ code: string; subtotal: number; currency?: string }>) {
				const { subtotal, currency } = ctx.params;
				const promo = await this.findPromotion(normalizeCode(ctx.params.code), "checked");
				const verdict = checkPromotion(promo, { subtotal, currency });
				if (!verdict.ok) throw promoRejected(verdict);
				return { code: promo!.code, discount: promotionDiscount(promo!, subtotal) };
			},
		},
	},

	methods: {
		/** The user's cart when logged in; else the guest cart of X-Cart-Id, created when absent. */
		ownerOf(ctx: Ctx<unknown>): Owner {
			return this.knownOwner(ctx) ?? guestOwner(ctx, issueCartId(jwtSecret()));
		},

		/** The user's cart when logged in; else the guest cart of X-Cart-Id; null for a guest without one. */
		knownOwner(ctx: Ctx<unknown>): Owner | null {
			const user = ctx.meta.user;
			if (user) return { key: `u:${user.id}`, userId: user.id };
			// Only an id this shop issued: one of the client's own choosing is no cart.
			return isIssuedCartId(ctx.meta.cartId, jwtSecret()) ? guestOwner(ctx, ctx.meta.cartId) : null;
		},

		/** The catalog's variants by id; `known` ones, just loaded by the same request, are not asked for again. */
		async loadVariants(ctx: Ctx<unknown>, ids: string[], known: CatalogVariant[] = []): Promise<Map<string, CatalogVariant>> {
			const byId = new Map(known.filter((v) => ids.includes(v.id)).map((v) => [v.id, v]));
			const missing = ids.filter((id) => !byId.has(id));
			if (!missing.length) return byId;
			const variants = await ctx.call<CatalogVariant[], { ids: string[] }>("products.getVariants", { ids: missing });
			for (const v of variants) byId.set(v.id, v);
			return byId;
		},

		/** The variant from the catalog; 404 when it is unknown or its product is archived. */
		async sellableVariant(ctx: Ctx<unknown>, variantId: string): Promise<CatalogVariant> {
			const variant = (await this.loadVariants(ctx, [variantId])).get(variantId);
			if (!variant?.isActive) throw new NotFoundError("Variant", { variantId });
			return variant;
		},

		async priceOwnerCart(ctx: Ctx<unknown>, ownerKey: string, known?: CatalogVariant[]) {
			return this.priceStoredCart(ctx, await this.store.get(ownerKey), known);
		},

		async priceStoredCart(ctx: Ctx<unknown>, stored: StoredCart, known?: CatalogVariant[]) {
			const [variants, promotion] = await Promise.all([
				this.loadVariants(ctx, stored.lines.map((l) => l.variantId), known),
				stored.promoCode ? this.findPromotion(stored.promoCode, "checked") : null,
			]);
			const priced = priceCart({ lines: stored.lines, variants: [...variants.values()], promoCode: stored.promoCode, promotion });
			return { ...priced, version: stored.version };
		},

		async showCart(ctx: Ctx<unknown>, owner: Owner, known?: CatalogVariant[]) {
			return cartView(await this.priceOwnerCart(ctx, owner.key, known), this.shippingRates);
		},

	},

	created() {
		// The same rates as the checkout's (orders reads the same settings).
		this.shippingRates = shippingRatesOf(readConfig());
	},

	async started() {
		this.store = await createCartStore({ redisUrl: readConfig().redisUrl, persist: this.db.carts, logger: this.logger });
	},

	async stopped() {
		await this.store?.close();
	},
};

export default CartService;
