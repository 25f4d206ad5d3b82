/**
 * Prices a cart, without I/O: the stored lines (variant and quantity, plus the price the customer
 * saw when adding) against the catalog's current variants. Prices, names and stock always come
 * from the catalog; a line that can no longer be bought is shown with a flag and left out of the
 * totals, so `subtotal` is what checkout would charge for the goods. All amounts are integer cents.
 */
import { DEFAULT_CURRENCY, multiplyCents, sumCents } from "./money";
import { checkPromotion, promotionDiscount, type Promotion, type PromoRejection } from "./promotions";

/** A line as the cart store keeps it. */
export interface CartLine {
	variantId: string;
	quantity: number;
	/** Unit price when the line was added or last changed; null when unknown. */
	unitPrice: number | null;
	/** The currency of that price; null or absent when unknown (a line stored before it was kept). */
	currency?: string | null;
}

/** What `products.getVariants` returns for one variant. */
export interface CatalogVariant {
	id: string;
	productId: string;
	sku: string;
	name: string;
	productName: string;
	price: number;
	currency: string;
	stock: number;
	isActive: boolean;
	image?: string | null;
}

export interface PricedCartItem {
	variantId: string;
	productId: string | null;
	sku: string | null;
	name: string | null;
	variantName: string | null;
	image: string | null;
	unitPrice: number;
	quantity: number;
	lineTotal: number;
	currency: string;
	stock: number;
	/** The product was archived or the variant is gone: shown, not counted, not purchasable. */
	archived: boolean;
	/** The price differs from the one the customer saw when adding the line (its amount or its currency). */
	priceChanged: boolean;
	previousUnitPrice: number | null;
	/** Set when the currency is what changed: the one the customer saw. */
	previousCurrency?: string;
	/** More in the cart than in stock now; checkout would be refused. */
	insufficientStock: boolean;
	/** Priced in another currency than the cart; shown, not counted. */
	currencyMismatch: boolean;
}

export type CartProblem =
	| { type: "archived"; variantId: string }
	| { type: "currency_mismatch"; variantId: string; currency: string }
	| { type: "insufficient_stock"; variantId: string; requested: number; available: number }
	| { type: "price_changed"; variantId: string; previousUnitPrice: number; unitPrice: number; previousCurrency?: string }
	| { type: "promo"; code: string; reason: PromoRejection; message: string };

export interface PricedCart {
	items: PricedCartItem[];
	subtotal: number;
	discount: number;
	total: number;
	currency: string;
	/** The code on the cart, also when it does not apply now (see promoProblem). */
	promoCode: string | null;
	promoProblem: { reason: PromoRejection; message: string } | null;
	problems: CartProblem[];
}

export interface PriceCartInput {
	lines: CartLine[];
	variants: CatalogVariant[];
	promoCode?: string | null;
	/** The promotion named by promoCode, or null when there is no such code. */
	promotion?: Promotion | null;
	now?: Date;
}

/**
 * The price a line written now remembers as seen: the one given (an order's, a guest line's) with its
 * currency, or the catalog's now when none is given. A changed price then shows as one (priceLine).
 */
export function seenPrice(given: { unitPrice?: number | null; currency?: string | null }, variant: Pick<CatalogVariant, "price" | "currency"> | undefined): { unitPrice: number; currency: string } {
	if (given.unitPrice != null) return { unitPrice: given.unitPrice, currency: given.currency ?? variant?.currency ?? "" };
	return { unitPrice: variant?.price ?? 0, currency: variant?.currency ?? "" };
}

function priceLine(line: CartLine, variant: CatalogVariant | undefined, cartCurrency: string): PricedCartItem {
	if (!variant) {
		// Gone from the catalog altogether: nothing to show but what the cart remembers.
		const unitPrice = line.unitPrice ?? 0;
		return {
			variantId: line.variantId, productId: null, sku: null, name: null, variantName: null, image: null,
			unitPrice, quantity: line.quantity, lineTotal: multiplyCents(unitPrice, line.quantity), currency: cartCurrency, stock: 0,
			archived: true, priceChanged: false, previousUnitPrice: null, insufficientStock: false, currencyMismatch: false,
		};
	}
	const archived = !variant.isActive;
	// A product moved to another currency: the same number is another price.
	const currencyChanged = line.unitPrice != null && !!line.currency && line.currency !== variant.currency;
	const priceChanged = currencyChanged || (line.unitPrice != null && line.unitPrice !== variant.price);
	return {
		variantId: line.variantId,
		productId: variant.productId,
		sku: variant.sku,
		name: variant.productName,
		variantName: variant.name,
		image: variant.image ?? null,
		unitPrice: variant.price,
		quantity: line.quantity,
		lineTotal: multiplyCents(variant.price, line.quantity),
		currency: variant.currency,
		stock: variant.stock,
		archived,
		priceChanged,
		previousUnitPrice: priceChanged ? line.unitPrice : null,
		...(currencyChanged ? { previousCurrency: line.currency! } : {}),
		insufficientStock: !archived && line.quantity > variant.stock,
		currencyMismatch: !archived && variant.currency !== cartCurrency,
	};
}

function lineProblems(item: PricedCartItem): CartProblem[] {
	const { variantId } = item;
	if (item.archived) return [{ type: "archived", variantId }];
	if (item.currencyMismatch) return [{ type: "currency_mismatch", variantId, currency: item.currency }];
	const problems: CartProblem[] = [];
	if (item.insufficientStock) problems.push({ type: "insufficient_stock", variantId, requested: item.quantity, available: item.stock });
	if (item.priceChanged) {
		problems.push({ type: "price_changed", variantId, previousUnitPrice: item.previousUnitPrice!, unitPrice: item.unitPrice, ...(item.previousCurrency ? { previousCurrency: item.previousCurrency } : {}) });
	}
	return problems;
}

export function isCounted(item: PricedCartItem): boolean {
	return !item.archived && !item.currencyMismatch;
}

export function priceCart(input: PriceCartInput): PricedCart {
	const byId = new Map(input.variants.map((v) => [v.id, v]));
	// The cart's currency is that of its first purchasable line: the shop sells in one currency,
	// and a stray line in another is flagged rather than summed into a meaningless total.
	const firstActive = input.lines.map((l) => byId.get(l.variantId)).find((v) => v?.isActive);
	const currency = firstActive?.currency ?? DEFAULT_CURRENCY;

	const items = input.lines.map((line) => priceLine(line, byId.get(line.variantId), currency));
	const problems = items.flatMap(lineProblems);
	const subtotal = sumCents(items.filter(isCounted).map((i) => i.lineTotal));

	const promoCode = input.promoCode ?? null;
	let discount = 0;
	let promoProblem: PricedCart["promoProblem"] = null;
	if (promoCode) {
		const verdict = checkPromotion(input.promotion, { subtotal, currency, now: input.now });
		if (verdict.ok) discount = promotionDiscount(input.promotion!, subtotal);
		else {
			promoProblem = { reason: verdict.reason, message: verdict.message };
			problems.push({ type: "promo", code: promoCode, ...promoProblem });
		}
	}
	return { items, subtotal, discount, total: subtotal - discount, currency, promoCode, promoProblem, problems };
}

export interface CartSnapshot {
	version: number;
	items: Array<Pick<PricedCartItem, "variantId" | "sku" | "name" | "variantName" | "unitPrice" | "quantity" | "lineTotal"> & { productId: string }>;
	subtotal: number;
	discount: number;
	total: number;
	currency: string;
	/** Set only while the code applies and takes something off, so checkout consumes a use only for a real discount. */
	promoCode: string | null;
	problems: CartProblem[];
}

/** What checkout buys: the purchasable lines only; everything else is listed in `problems`. */
export function toSnapshot(cart: PricedCart, version: number): CartSnapshot {
	const items = cart.items.filter(isCounted).map((i) => ({
		variantId: i.variantId,
		productId: i.productId!,
		sku: i.sku,
		name: i.name,
		variantName: i.variantName,
		unitPrice: i.unitPrice,
		quantity: i.quantity,
		lineTotal: i.lineTotal,
	}));
	return {
		version,
		items,
		subtotal: cart.subtotal,
		discount: cart.discount,
		total: cart.total,
		currency: cart.currency,
		// 10% of a 1-cent cart is nothing: a code of limited uses is not used up by it.
		promoCode: cart.promoProblem || cart.discount <= 0 ? null : cart.promoCode,
		problems: cart.problems,
	};
}
