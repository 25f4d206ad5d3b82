/**
 * Promotion rules, without I/O: whether a code applies to a cart (with the reason when it does
 * not) and how much it takes off. Amounts are integer cents; a discount never exceeds the subtotal.
 */
import { formatMoney, percentOf } from "./money";
import { invalidField, type FieldProblem, type UnprocessableError } from "./errors";
import { isIsoCurrency } from "./catalog-rules";

export type PromotionType = "percent" | "fixed";

export interface Promotion {
	code: string;
	type: PromotionType;
	/** Percent 1..100, or cents off for `fixed`. */
	value: number;
	/** Cents; the code applies from this subtotal on. */
	minSubtotal: number;
	/** null: unlimited. */
	maxUses: number | null;
	usedCount: number;
	expiresAt: Date | string | null;
	active: boolean;
	/** Currency of a fixed amount and of minSubtotal. */
	currency: string;
}

/** Why a code does not apply; also the `type` of the 422 problem on `code`. */
export type PromoRejection = "unknown" | "inactive" | "expired" | "exhausted" | "currency_mismatch" | "below_minimum";

export type PromoVerdict = { ok: true } | { ok: false; reason: PromoRejection; message: string };

export interface PromoCheckContext {
	/** Cart subtotal in cents; the minimum is not checked when absent (use consumption). */
	subtotal?: number;
	currency?: string;
	now?: Date;
	/** Leave out the use limit: consuming holds it with slots, not with the counter. */
	ignoreUseLimit?: boolean;
}

export const PROMO_CODE_PATTERN = /^[A-Za-z0-9_-]{3,32}$/;

/** Codes are stored upper-cased, so customers may type them in any case. */
export function normalizeCode(code: string): string {
	return code.trim().toUpperCase();
}

function reject(reason: PromoRejection, message: string): PromoVerdict {
	return { ok: false, reason, message };
}

/** Checks every rule of a promotion, in the order a customer can best act on. */
export function checkPromotion(promo: Promotion | null | undefined, ctx: PromoCheckContext = {}): PromoVerdict {
	if (!promo) return reject("unknown", "Unknown promotion code");
	if (!promo.active) return reject("inactive", "This promotion code is no longer active");
	const now = ctx.now ?? new Date();
	if (promo.expiresAt != null && new Date(promo.expiresAt).getTime() <= now.getTime()) return reject("expired", "This promotion code has expired");
	if (!ctx.ignoreUseLimit && promo.maxUses != null && promo.usedCount >= promo.maxUses) return reject("exhausted", "This promotion code has been used up");
	if (ctx.currency && ctx.currency !== promo.currency && (promo.type === "fixed" || promo.minSubtotal > 0)) {
		return reject("currency_mismatch", `This promotion code applies to ${promo.currency} carts only`);
	}
	if (ctx.subtotal != null && ctx.subtotal < promo.minSubtotal) {
		return reject("below_minimum", `This promotion code needs a subtotal of at least ${formatMoney(promo.minSubtotal, promo.currency)}`);
	}
	return { ok: true };
}

/** The 422 of a code that does not apply, naming the reason (unknown, expired, exhausted, ...). */
export function promoRejected(verdict: Exclude<PromoVerdict, { ok: true }>): UnprocessableError {
	return invalidField("code", verdict.message, verdict.reason);
}

/** Cents off `subtotal`: percent rounded to whole cents, never more than the subtotal, never negative. */
export function promotionDiscount(promo: Pick<Promotion, "type" | "value">, subtotal: number): number {
	if (subtotal <= 0) return 0;
	const raw = promo.type === "percent" ? percentOf(subtotal, promo.value) : promo.value;
	return Math.min(subtotal, Math.max(0, raw));
}

/** Cross-field rules the validator schema cannot express: a percentage is 1..100. */
/** What is wrong with a new promotion beyond its fields' own rules; an expiry already past would make a dead code. */
export function promotionInputProblems(input: { type: PromotionType; value: number; expiresAt?: Date | string | null; currency?: string | null }, now = new Date()): FieldProblem[] {
	const problems: FieldProblem[] = [];
	// The catalog's rule: three capitals are not enough, "XYZ" would make a code no cart can use.
	if (input.currency != null && !isIsoCurrency(input.currency)) {
		problems.push({ field: "currency", message: "currency must be an ISO 4217 currency code in uppercase letters, such as USD", type: "currency" });
	}
	if (input.type === "percent" && (input.value < 1 || input.value > 100)) {
		problems.push({ field: "value", message: "A percent promotion takes a value from 1 to 100", type: "numberMax" });
	}
	if (input.expiresAt != null && new Date(input.expiresAt).getTime() <= now.getTime()) {
		problems.push({ field: "expiresAt", message: "expiresAt must be in the future", type: "dateMin" });
	}
	return problems;
}

/**
 * A limited code's uses are numbered slots 0..maxUses-1, each held by at most one order (a unique
 * index): taking a use is one insert, giving it back one update that frees the slot, so no crash
 * can leave a use taken by nobody. This is the lowest slot below `maxUses` that none of `taken` holds, or null when all are.
 */
export function lowestFreeSlot(taken: Iterable<unknown>, maxUses: number): number | null {
	const held = new Set<number>();
	for (const s of taken) if (typeof s === "number" && s < maxUses) held.add(s);
	for (let s = 0; s < maxUses; s++) if (!held.has(s)) return s;
	return null;
}

/** The slot a use is first tried at: the counter guides it (it may lag a crash), and each lost race moves one on. */
export function probeSlot(usedCount: number, attempt: number, maxUses: number): number | null {
	const slot = Math.max(0, usedCount) + attempt;
	return slot < maxUses ? slot : null;
}
