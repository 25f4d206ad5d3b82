import { productListQuery, productListSort } from "../../lib/catalog-query";

describe("productListQuery", () => {
	test.each([
		[{}, { isActive: true }],
		[{ categoryIds: ["a", "b"] }, { isActive: true, categoryId: { $in: ["a", "b"] } }],
		[{ categoryIds: [] }, { isActive: true, categoryId: { $in: [] } }],
		// The range applies to the "from" price (the least over the variants), not the product's own.
		[{ minPrice: 100 }, { isActive: true, fromPrice: { $gte: 100 } }],
		[{ maxPrice: 0 }, { isActive: true, fromPrice: { $lte: 0 } }],
		[{ minPrice: 100, maxPrice: 500 }, { isActive: true, fromPrice: { $gte: 100, $lte: 500 } }],
		[{ minPrice: 500, maxPrice: 500 }, { isActive: true, fromPrice: { $gte: 500, $lte: 500 } }],
		[{ categoryIds: ["a"], maxPrice: 500 }, { isActive: true, categoryId: { $in: ["a"] }, fromPrice: { $lte: 500 } }],
		[{ currency: "EUR", maxPrice: 500 }, { isActive: true, currency: "EUR", fromPrice: { $lte: 500 } }],
	])("%j → %j", (filter, query) => expect(productListQuery(filter)).toEqual(query));

	test("a range below its own start is refused, naming maxPrice", () => {
		expect(() => productListQuery({ minPrice: 501, maxPrice: 500 })).toThrow(expect.objectContaining({ code: 422, data: [expect.objectContaining({ field: "maxPrice" })] }));
	});
});

describe("productListSort", () => {
	test.each([
		[undefined, { createdAt: -1, id: 1 }],
		["price", { fromPrice: 1, id: 1 }],
		["-price", { fromPrice: -1, id: 1 }],
		["name", { sortName: 1, name: 1, id: 1 }],
		["-createdAt", { createdAt: -1, id: 1 }],
	] as const)("%s → %j", (sort, expected) => {
		const order = productListSort(sort);
		expect(order).toEqual(expected);
		// The id tie-breaker comes last.
		expect(Object.keys(order).at(-1)).toBe("id");
	});
});
