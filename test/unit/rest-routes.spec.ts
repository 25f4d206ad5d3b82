import { isShopRoute, shopRouteMethods, SHOP_ROUTES } from "../../lib/rest-routes";

describe("isShopRoute", () => {
	test("matches a route by method and path, a :param standing for one non-empty segment", () => {
		expect(isShopRoute("GET", "/api/products/p1/reviews")).toBe(true);
		expect(isShopRoute("get", "/api/products/some-slug")).toBe(true);
		expect(isShopRoute("POST", "/api/orders/o1/cancel")).toBe(true);
		expect(isShopRoute("GET", "/api/health")).toBe(true);
	});

	test("another method, an extra or missing segment, or an empty parameter is not a route", () => {
		expect(isShopRoute("PUT", "/api/products/p1")).toBe(false);
		expect(isShopRoute("GET", "/api/products/p1/reviews/r1")).toBe(false);
		expect(isShopRoute("POST", "/api/orders//cancel")).toBe(false);
		expect(isShopRoute("GET", "/api/parcels/p1")).toBe(false);
		expect(isShopRoute("GET", "/products")).toBe(false);
	});

	test("each route is listed once", () => {
		expect(new Set(SHOP_ROUTES).size).toBe(SHOP_ROUTES.length);
	});
});

describe("shopRouteMethods", () => {
	test("the methods of the shop's routes on a path; none for a path that is no route", () => {
		expect(shopRouteMethods("/api/products").sort()).toEqual(["GET", "POST"]);
		expect(shopRouteMethods("/api/products/p1").sort()).toEqual(["DELETE", "GET", "PATCH"]);
		expect(shopRouteMethods("/api/products/p1/reviews/r1")).toEqual([]);
		expect(shopRouteMethods("/api/products/")).toEqual([]);
	});
});
