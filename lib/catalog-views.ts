/** What the catalog shows: stored products and variants turned into the shapes of API.md and docs/services.md. */
import { ancestorPath, type CategoryNode } from "./category-tree";
import type { ProductDoc, VariantDoc } from "./catalog-rules";

/** A stored product as read back: the document plus its id (older rows may lack rating/updatedAt). */
export type Product = Omit<ProductDoc, "id" | "rating" | "createdAt" | "updatedAt"> & {
	id: string;
	rating?: ProductDoc["rating"];
	/** Counts the writes of `fromPrice`, so a recompute stores its result only if none came between. */
	fromPriceVersion?: number;
	createdAt: Date | string;
	updatedAt?: Date | string;
};

export type Variant = Omit<VariantDoc, "id" | "createdAt" | "updatedAt"> & { id: string };

/** A variant sells at its own price, or at the product's when it has none. */
export function effectivePrice(variant: { price?: number | null }, product: Pick<Product, "price">): number {
	return variant.price ?? product.price;
}

/**
 * The "from" price: the least a customer pays for the product, over every variant (as search
 * counts them: variants have no active flag of their own). Without variants, the product's price.
 */
export function fromPriceOf(product: Pick<Product, "price">, variants: Array<{ price?: number | null }>): number {
	if (!variants.length) return product.price;
	let least = Infinity;
	for (const v of variants) least = Math.min(least, effectivePrice(v, product));
	return least;
}

/** The "from" price of each product, from the variants of all of them (in any order). */
export function fromPricesOf(products: Array<Pick<Product, "id" | "price">>, variants: Array<{ productId: string; price?: number | null }>): Map<string, number> {
	const variantsOf = new Map<string, Array<{ price?: number | null }>>(products.map((p) => [p.id, []]));
	for (const v of variants) variantsOf.get(v.productId)?.push(v);
	return new Map(products.map((p) => [p.id, fromPriceOf(p, variantsOf.get(p.id)!)]));
}

/** The price a listing or wishlist row shows: the stored "from" price, or the product's own before it existed. */
export function listedPrice(p: Pick<Product, "price" | "fromPrice">): number {
	return p.fromPrice ?? p.price;
}

/** A "was" price is shown only above the price it stands next to; else there is no saving to show. */
export function wasPrice(compareAtPrice: number | null | undefined, price: number): number | null {
	return compareAtPrice != null && compareAtPrice > price ? compareAtPrice : null;
}

export function mainImage(product: Pick<Product, "images">): string | null {
	const [first] = [...(product.images ?? [])].sort((a, b) => a.position - b.position);
	return first?.url ?? null;
}

export function ratingOf(product: Pick<Product, "rating">): { average: number; count: number } {
	return { average: product.rating?.average ?? 0, count: product.rating?.count ?? 0 };
}

/**
 * A row of the product listing: no stock here, so stock changes never invalidate the cached listing.
 * Its price is the "from" price, which the listing filters and sorts by, as search does.
 */
export function toProductSummary(p: Product) {
	const price = listedPrice(p);
	return {
		id: p.id,
		name: p.name,
		slug: p.slug,
		description: p.description,
		categoryId: p.categoryId,
		price,
		compareAtPrice: wasPrice(p.compareAtPrice, price),
		currency: p.currency,
		image: mainImage(p),
		images: p.images,
		rating: ratingOf(p),
		isActive: p.isActive,
		createdAt: p.createdAt,
	};
}

/**
 * A variant on the product page, at the price it sells at, with the product's "was" price only when
 * it is above that price (as the listing shows it): what a storefront strikes through beside the
 * variant a customer picked, never a "was" price below what they pay.
 */
export function toVariantView(v: Variant, p: Pick<Product, "price" | "compareAtPrice">) {
	const price = effectivePrice(v, p);
	return { id: v.id, sku: v.sku, name: v.name, price, compareAtPrice: wasPrice(p.compareAtPrice, price), options: v.options ?? {}, stock: v.stock };
}

/**
 * The product page: the summary plus its variants with current stock and the category breadcrumb.
 * Its `price` and `compareAtPrice` are the product's own, as an admin sets them; each variant
 * carries the price it sells at (and the "was" price above it, if any), and `fromPrice` is the least of those (what the listing shows),
 * worked out from the variants on the page so the two always agree.
 */
export function toProductDetail(p: Product, variants: Variant[], categories: CategoryNode[]) {
	const views = variants.map((v) => toVariantView(v, p));
	return {
		...toProductSummary(p),
		price: p.price,
		compareAtPrice: p.compareAtPrice,
		fromPrice: fromPriceOf(p, variants),
		updatedAt: p.updatedAt,
		categoryPath: ancestorPath(categories, p.categoryId).map((c) => ({ id: c.id, name: c.name, slug: c.slug })),
		variants: views,
		inStock: views.some((v) => v.stock > 0),
	};
}

/** `products.getVariants`: what cart and orders need to price and show a line. */
export function toVariantInfo(v: Variant, p: Product) {
	return {
		id: v.id,
		productId: v.productId,
		sku: v.sku,
		name: v.name,
		productName: p.name,
		productSlug: p.slug,
		price: effectivePrice(v, p),
		currency: p.currency,
		stock: v.stock,
		options: v.options ?? {},
		isActive: p.isActive,
		image: mainImage(p),
	};
}

/** `products.getMany`: a product reference for wishlists and reviews, priced as the listing row is. */
export function toProductRef(p: Product) {
	return { id: p.id, name: p.name, slug: p.slug, price: listedPrice(p), currency: p.currency, image: mainImage(p), isActive: p.isActive };
}

/** Every value each option takes over the variants: `{Size: ["S", "M"], Color: ["Red"]}`. */
export function optionValues(variants: Array<Pick<Variant, "options">>): Record<string, string[]> {
	// A Map: option names are the merchant's words, and "constructor" or "toString" would find a
	// plain object's inherited members.
	const out = new Map<string, string[]>();
	for (const v of variants) {
		for (const [name, value] of Object.entries(v.options ?? {})) {
			const list = out.get(name) ?? out.set(name, []).get(name)!;
			if (!list.includes(value)) list.push(value);
		}
	}
	return Object.fromEntries(out);
}

/** `products.listForIndex`: one document of the search index. */
export function toIndexDocument(p: Product, variants: Variant[], categories: Map<string, CategoryNode> | CategoryNode[]) {
	const path = ancestorPath(categories, p.categoryId);
	const prices = variants.length ? variants.map((v) => effectivePrice(v, p)) : [p.price];
	const stock = variants.reduce((sum, v) => sum + Math.max(0, v.stock), 0);
	return {
		id: p.id,
		name: p.name,
		slug: p.slug,
		description: p.description,
		categoryId: p.categoryId,
		categoryPath: path.map((c) => c.slug),
		categoryNames: path.map((c) => c.name),
		price: p.price,
		currency: p.currency,
		minPrice: fromPriceOf(p, variants),
		maxPrice: Math.max(...prices),
		inStock: stock > 0,
		stock,
		options: optionValues(variants),
		rating: ratingOf(p),
		image: mainImage(p),
		createdAt: p.createdAt,
	};
}
