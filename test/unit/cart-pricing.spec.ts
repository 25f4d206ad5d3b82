import { priceCart, seenPrice, toSnapshot, type CatalogVariant, type CartLine } from "../../lib/cart-pricing";
import type { Promotion } from "../../lib/promotions";

const variant = (id: string, over: Partial<CatalogVariant> = {}): CatalogVariant => ({
	id,
	productId: `p-${id}`,
	sku: `SKU-${id}`,
	name: `Size ${id}`,
	productName: `Shirt ${id}`,
	price: 1000,
	currency: "USD",
	stock: 10,
	isActive: true,
	image: null,
	...over,
});
const line = (variantId: string, quantity: number, unitPrice: number | null = 1000): CartLine => ({ variantId, quantity, unitPrice });
const promo = (over: Partial<Promotion> = {}): Promotion => ({
	code: "TEN", type: "percent", value: 10, minSubtotal: 0, maxUses: null, usedCount: 0, expiresAt: null, active: true, currency: "USD", ...over,
});

describe("priceCart", () => {
	test("an empty cart is all zeros in the default currency", () => {
		expect(priceCart({ lines: [], variants: [] })).toMatchObject({ items: [], subtotal: 0, discount: 0, total: 0, currency: "USD", promoCode: null, problems: [] });
	});

	test("prices from the catalog, not from what the cart remembers", () => {
		const cart = priceCart({ lines: [line("a", 2, 1), line("b", 3, 250)], variants: [variant("a", { price: 1999 }), variant("b", { price: 250 })] });
		expect(cart.items.map((i) => [i.variantId, i.unitPrice, i.quantity, i.lineTotal])).toEqual([
			["a", 1999, 2, 3998],
			["b", 250, 3, 750],
		]);
		expect(cart.items[0]).toMatchObject({ productId: "p-a", name: "Shirt a", variantName: "Size a", sku: "SKU-a" });
		expect(cart).toMatchObject({ subtotal: 4748, discount: 0, total: 4748 });
	});

	test.each([
		["price changed since added", [line("a", 1, 900)], [variant("a")], { priceChanged: true, previousUnitPrice: 900 }, 1000, ["price_changed"]],
		["price unchanged", [line("a", 1, 1000)], [variant("a")], { priceChanged: false, previousUnitPrice: null }, 1000, []],
		["price seen unknown", [line("a", 1, null)], [variant("a")], { priceChanged: false }, 1000, []],
		["archived product: shown, not counted", [line("a", 2)], [variant("a", { isActive: false })], { archived: true, lineTotal: 2000 }, 0, ["archived"]],
		["variant gone from the catalog", [line("a", 2, 700)], [], { archived: true, name: null, unitPrice: 700 }, 0, ["archived"]],
		["more in the cart than in stock", [line("a", 5)], [variant("a", { stock: 3 })], { insufficientStock: true, stock: 3 }, 5000, ["insufficient_stock"]],
		["exactly the stock", [line("a", 3)], [variant("a", { stock: 3 })], { insufficientStock: false }, 3000, []],
	] as const)("%s", (_name, lines, variants, flags, subtotal, problemTypes) => {
		const cart = priceCart({ lines: [...lines], variants: [...variants] });
		expect(cart.items[0]).toMatchObject(flags);
		expect(cart.subtotal).toBe(subtotal);
		expect(cart.problems.map((p) => p.type)).toEqual(problemTypes);
	});

	test("a line in another currency is flagged and left out of the totals", () => {
		const cart = priceCart({ lines: [line("a", 1), line("b", 1)], variants: [variant("a"), variant("b", { currency: "EUR" })] });
		expect(cart.currency).toBe("USD");
		expect(cart.items[1].currencyMismatch).toBe(true);
		expect(cart.subtotal).toBe(1000);
	});

	test.each([
		["percent", promo(), 2 * 1005, 201],
		["fixed", promo({ type: "fixed", value: 500 }), 2010, 500],
		["fixed capped at the subtotal", promo({ type: "fixed", value: 50_000 }), 2010, 2010],
	])("applies a %s promotion", (_name, p, subtotal, discount) => {
		const cart = priceCart({ lines: [line("a", 2)], variants: [variant("a", { price: 1005 })], promoCode: p.code, promotion: p });
		expect(cart).toMatchObject({ subtotal, discount, total: subtotal - discount, promoCode: p.code, promoProblem: null });
	});

	test.each([
		["below its minimum", promo({ minSubtotal: 10_000 }), "below_minimum"],
		["expired", promo({ expiresAt: new Date(Date.now() - 1000) }), "expired"],
		["deleted", null, "unknown"],
	])("a code that no longer applies (%s) gives no discount and says why", (_name, p, reason) => {
		const cart = priceCart({ lines: [line("a", 1)], variants: [variant("a")], promoCode: "TEN", promotion: p });
		expect(cart).toMatchObject({ subtotal: 1000, discount: 0, total: 1000, promoCode: "TEN", promoProblem: { reason } });
		expect(cart.problems).toContainEqual(expect.objectContaining({ type: "promo", code: "TEN", reason }));
	});

	test("totals are integers whatever the prices", () => {
		const cart = priceCart({ lines: [line("a", 3), line("b", 7)], variants: [variant("a", { price: 333 }), variant("b", { price: 1 })], promoCode: "X", promotion: promo({ value: 33 }) });
		for (const n of [cart.subtotal, cart.discount, cart.total]) expect(Number.isInteger(n)).toBe(true);
		expect(cart.subtotal).toBe(1006);
		expect(cart.discount).toBe(332);
		expect(cart.total).toBe(674);
	});
});

describe("seenPrice: what a line written now remembers", () => {
	test("the price given with its currency, else the catalog's now", () => {
		expect(seenPrice({ unitPrice: 900, currency: "EUR" }, variant("a", { price: 1000 }))).toEqual({ unitPrice: 900, currency: "EUR" });
		expect(seenPrice({ unitPrice: 900 }, variant("a", { price: 1000 }))).toEqual({ unitPrice: 900, currency: "USD" });
		expect(seenPrice({ unitPrice: null, currency: null }, variant("a", { price: 1000 }))).toEqual({ unitPrice: 1000, currency: "USD" });
		expect(seenPrice({}, undefined)).toEqual({ unitPrice: 0, currency: "" });
	});
});

describe("a product moved to another currency", () => {
	test("is a changed price, naming the currency the customer saw, though the number is the same", () => {
		const seen: CartLine = { variantId: "a", quantity: 1, unitPrice: 1000, currency: "JPY" };
		const cart = priceCart({ lines: [seen], variants: [variant("a", { price: 1000, currency: "USD" })] });
		expect(cart.items[0]).toMatchObject({ priceChanged: true, previousUnitPrice: 1000, previousCurrency: "JPY", currency: "USD" });
		expect(cart.problems).toEqual([{ type: "price_changed", variantId: "a", previousUnitPrice: 1000, unitPrice: 1000, previousCurrency: "JPY" }]);
	});

	test("a line kept without its currency (stored before it was kept) is judged by its amount alone", () => {
		const cart = priceCart({ lines: [line("a", 1, 1000)], variants: [variant("a", { price: 1000, currency: "EUR" })] });
		expect(cart.items[0]).toMatchObject({ priceChanged: false, previousUnitPrice: null });
		expect(cart.items[0]).not.toHaveProperty("previousCurrency");
	});
});

describe("toSnapshot", () => {
	test("keeps only the purchasable lines, lists the rest as problems, and carries the version", () => {
		const cart = priceCart({ lines: [line("a", 2), line("b", 1)], variants: [variant("a"), variant("b", { isActive: false })], promoCode: "TEN", promotion: promo() });
		const snap = toSnapshot(cart, 7);
		expect(snap).toEqual({
			version: 7,
			items: [{ variantId: "a", productId: "p-a", sku: "SKU-a", name: "Shirt a", variantName: "Size a", unitPrice: 1000, quantity: 2, lineTotal: 2000 }],
			subtotal: 2000,
			discount: 200,
			total: 1800,
			currency: "USD",
			promoCode: "TEN",
			problems: [{ type: "archived", variantId: "b" }],
		});
	});

	test("a code that does not apply is not handed to checkout", () => {
		const cart = priceCart({ lines: [line("a", 1)], variants: [variant("a")], promoCode: "TEN", promotion: promo({ active: false }) });
		expect(toSnapshot(cart, 1)).toMatchObject({ promoCode: null, discount: 0 });
	});

	test("nor a code that takes nothing off (10% of 1 cent, of a free item): no use of it is taken", () => {
		for (const price of [1, 0]) {
			const cart = priceCart({ lines: [line("a", 1, price)], variants: [variant("a", { price })], promoCode: "TEN", promotion: promo() });
			expect(cart.promoCode).toBe("TEN");
			expect(toSnapshot(cart, 1)).toMatchObject({ promoCode: null, discount: 0, total: price });
		}
	});
});
