/**
 * The product listing as a store query: filters and sort orders of `GET /api/products`.
 * Prices are the stored "from" prices (`fromPriceOf` in lib/catalog-views.ts): what the row shows
 * and the least the customer pays, as search filters and sorts.
 */
import { invalidField } from "./errors";

export const PRODUCT_SORTS = {
	price: { fromPrice: 1 },
	"-price": { fromPrice: -1 },
	// Case and accents aside (nameSortKey): by code point, "apple" came after "Zebra".
	name: { sortName: 1, name: 1 },
	"-createdAt": { createdAt: -1 },
} as const satisfies Record<string, Record<string, 1 | -1>>;

export type ProductSort = keyof typeof PRODUCT_SORTS;
export const DEFAULT_PRODUCT_SORT: ProductSort = "-createdAt";

export interface ListingFilter {
	/** The category and its sub-categories; undefined means every category. */
	categoryIds?: string[];
	/** Only products priced in this currency: prices in different currencies are not comparable. */
	currency?: string;
	minPrice?: number;
	maxPrice?: number;
}

/** A price range that is empty by construction is a mistake in the request, not an empty shop (the product list and search agree). */
export function assertPriceRange(minPrice: number | undefined, maxPrice: number | undefined): void {
	if (minPrice != null && maxPrice != null && minPrice > maxPrice) throw invalidField("maxPrice", "maxPrice must not be below minPrice", "range");
}

/** Active products only: archived ones stay for past orders but leave the shop window. */
export function productListQuery(filter: ListingFilter): Record<string, unknown> {
	assertPriceRange(filter.minPrice, filter.maxPrice);
	const query: Record<string, unknown> = { isActive: true };
	if (filter.categoryIds) query.categoryId = { $in: filter.categoryIds };
	if (filter.currency) query.currency = filter.currency;
	const price: Record<string, number> = {};
	if (filter.minPrice != null) price.$gte = filter.minPrice;
	if (filter.maxPrice != null) price.$lte = filter.maxPrice;
	if (Object.keys(price).length) query.fromPrice = price;
	return query;
}

/** The sort order, with the id as tie-breaker so pages never overlap or skip a product. */
export function productListSort(sort: ProductSort | undefined): Record<string, 1 | -1> {
	return { ...PRODUCT_SORTS[sort ?? DEFAULT_PRODUCT_SORT], id: 1 };
}
