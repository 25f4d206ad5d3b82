/**
 * Catalog input rules: the fastest-validator fragments shared by the products actions, and the
 * pure conversion of a validated "create product" request into the documents to store.
 */
import { fromPriceOf } from "./catalog-views";
import { MAX_SLUG_LENGTH, foldLatin } from "./slug";
import { DEFAULT_CURRENCY } from "./money";
import { oneLineRule } from "./param-rules";

/** Integer cents, never a float: 19.99 or "abc" or -1 are rejected with 422 naming the field. */
export const centsRule = { type: "number", integer: true, min: 0, max: 1_000_000_000 } as const;
/** A `minPrice=`/`maxPrice=` of a listing or search: cents as a query string carries them. */
export const priceFilterRule = { ...centsRule, optional: true, convert: true } as const;

/** The ISO 4217 codes in use (Node's ICU list), so "XYZ" is no currency though it looks like one. */
export const ISO_CURRENCIES: ReadonlySet<string> = new Set(Intl.supportedValuesOf("currency"));

export function isIsoCurrency(code: unknown): boolean {
	return typeof code === "string" && ISO_CURRENCIES.has(code);
}

/**
 * A currency as the shop stores it: an ISO 4217 code in uppercase; anything else is a 422 naming the
 * field. The codes themselves are the pattern, so the rule works with any validator settings.
 */
const CURRENCY_CODES = [...ISO_CURRENCIES].filter((c) => /^[A-Z]{3}$/.test(c)).join("|");
export const currencyRule = {
	type: "string",
	pattern: new RegExp(`^(?:${CURRENCY_CODES})$`),
	messages: { stringPattern: "The '{field}' field must be an ISO 4217 currency code in uppercase letters, such as USD." },
} as const;

/**
 * A `currency=` filter of a listing or search: an ISO 4217 code in any case ("eur" is EUR), sanitized
 * to uppercase before the check; empty means no filter, as an empty `category=` does.
 */
export const currencyFilterRule = {
	type: "string",
	optional: true,
	trim: true,
	uppercase: true,
	pattern: new RegExp(`^(?:${CURRENCY_CODES})?$`),
	messages: { stringPattern: "The '{field}' field must be an ISO 4217 currency code, such as USD." },
} as const;

export const slugRule = { type: "string", min: 1, max: MAX_SLUG_LENGTH, pattern: /^[a-z0-9]+(?:-[a-z0-9]+)*$/, messages: { stringPattern: "The '{field}' field must be lowercase letters, digits and single dashes." } } as const;

/** `{Size: "L", Color: "Red"}`: option names to string values. */
// Option names become stored field names: no "." (a path) and no leading "$" (an operator).
export const optionsRule = {
	type: "record",
	key: { type: "string", min: 1, max: 40, pattern: /^[^.$][^.]*$/, messages: { stringPattern: "Option names cannot contain '.' or start with '$'." } },
	value: { type: "string", min: 1, max: 80, ...oneLineRule },
} as const;

export const imageRule = {
	type: "object",
	strict: "remove",
	props: { url: { type: "url" }, alt: { type: "string", max: 200, optional: true, ...oneLineRule } },
} as const;

export const variantRule = {
	type: "object",
	strict: "remove",
	props: {
		sku: { type: "string", trim: true, min: 1, max: 64, ...oneLineRule },
		name: { type: "string", trim: true, min: 1, max: 200, optional: true, ...oneLineRule },
		// Without its own price a variant sells at the product's price.
		price: { ...centsRule, optional: true, nullable: true },
		stock: { type: "number", integer: true, min: 0, max: 1_000_000 },
		options: { ...optionsRule, optional: true },
	},
} as const;

export interface ImageInput {
	url: string;
	alt?: string;
}

export interface VariantInput {
	sku: string;
	name?: string;
	price?: number | null;
	stock: number;
	options?: Record<string, string>;
}

export interface ProductInput {
	name: string;
	slug?: string;
	description?: string;
	categoryId?: string | null;
	price: number;
	compareAtPrice?: number | null;
	currency?: string;
	images?: ImageInput[];
	variants: VariantInput[];
}

export interface StoredImage {
	url: string;
	alt: string;
	position: number;
}

export interface ProductDoc {
	id?: string;
	name: string;
	/** nameSortKey(name): the list's name order (products stored before it have it filled at start). */
	sortName?: string;
	/** Slugs it had before an admin changed it: links to them still find it. */
	formerSlugs?: string[];
	slug: string;
	description: string;
	categoryId: string | null;
	price: number;
	/**
	 * The least over its variants' prices: what the listing shows, filters and sorts by. Optional only
	 * for generated catalogs (writeCatalog adds it) and rows stored before it (filled at start).
	 */
	fromPrice?: number;
	compareAtPrice: number | null;
	currency: string;
	images: StoredImage[];
	isActive: boolean;
	rating: { average: number; count: number };
	createdAt: Date;
	updatedAt: Date;
}

export interface VariantDoc {
	id?: string;
	productId: string;
	sku: string;
	name: string;
	price: number | null;
	options: Record<string, string>;
	stock: number;
	createdAt: Date;
	updatedAt: Date;
}

/** Images keep the order they were given in; `alt` falls back to the product name. */
export function toStoredImages(images: ImageInput[] | undefined, productName: string): StoredImage[] {
	return (images ?? []).map((img, position) => ({ url: img.url, alt: img.alt ?? productName, position }));
}

/** "L / Red" from the options, or "Default" for a product without options. */
export function variantDisplayName(options: Record<string, string> | undefined): string {
	const values = Object.values(options ?? {});
	return values.length ? values.join(" / ") : "Default";
}

/** SKUs that appear more than once in one request. */
export function duplicateSkus(variants: Array<{ sku: string }>): string[] {
	const seen = new Set<string>();
	const dupes = new Set<string>();
	for (const { sku } of variants) (seen.has(sku) ? dupes : seen).add(sku);
	return [...dupes];
}

/** What the list's name order sorts by: case and accents aside ("apple" before "Banana", "Équinoxe" among the E's). */
export function nameSortKey(name: string): string {
	return foldLatin(name).trim();
}

export function newProductDoc(input: ProductInput, slug: string, now: Date): ProductDoc {
	return {
		name: input.name,
		sortName: nameSortKey(input.name),
		slug,
		description: input.description ?? "",
		categoryId: input.categoryId ?? null,
		price: input.price,
		fromPrice: fromPriceOf(input, input.variants),
		compareAtPrice: input.compareAtPrice ?? null,
		currency: input.currency ?? DEFAULT_CURRENCY,
		images: toStoredImages(input.images, input.name),
		isActive: true,
		rating: { average: 0, count: 0 },
		createdAt: now,
		updatedAt: now,
	};
}

/** Whether a stored variant's name is one the shop gave it (from its options, or its SKU), not an admin's. */
export function hasDerivedName(v: Pick<VariantDoc, "name" | "options" | "sku">): boolean {
	return v.name === variantDisplayName(v.options) || v.name === v.sku;
}

/**
 * Each variant's own name, or one derived from its options; where that is already a name of the
 * product's (`taken`, or an earlier one of `inputs`), its SKU: a second variant without options is
 * not "Default" twice.
 */
export function variantNamesFor(inputs: Array<Pick<VariantInput, "name" | "options" | "sku">>, taken: Iterable<string> = []): string[] {
	const names = new Set(taken);
	return inputs.map((v) => {
		const derived = variantDisplayName(v.options);
		const name = v.name ?? (names.has(derived) ? v.sku : derived);
		names.add(name);
		return name;
	});
}

export function newVariantDoc(input: VariantInput, productId: string, now: Date, name = variantNamesFor([input])[0]): VariantDoc {
	const options = input.options ?? {};
	return {
		productId,
		sku: input.sku,
		name,
		price: input.price ?? null,
		options,
		stock: input.stock,
		createdAt: now,
		updatedAt: now,
	};
}

/** Which problems a compare-at price can have: it is the "was" price, so above the price. */
export function compareAtProblem(price: number, compareAtPrice: number | null | undefined): string | null {
	if (compareAtPrice == null) return null;
	return compareAtPrice > price ? null : "The 'compareAtPrice' field must be greater than 'price'.";
}

/**
 * The category a `?category=` filter names, in a flat list or a tree (`children`): a slug in any
 * case ("Clothing" is "clothing", as slugs are lowercase), or an id. The product list and search
 * both read the filter this way, so they answer it alike.
 */
export function findCategoryRef<C extends { id: string; slug: string; children?: C[] }>(categories: readonly C[], ref: string): C | undefined {
	const wanted = ref.trim();
	if (!wanted) return undefined;
	const slug = wanted.toLowerCase();
	const all: C[] = [];
	const walk = (list: readonly C[]) => {
		for (const c of list) {
			all.push(c);
			if (Array.isArray(c.children)) walk(c.children);
		}
	};
	walk(categories);
	// Slugs first: an id never names another category than a slug that spells it.
	return all.find((c) => c.slug === slug) ?? all.find((c) => c.id === wanted);
}
