/**
 * Every REST route of the shop (the contract of ../shared/API.md as the services' `rest:`
 * annotations build it), so a gateway knows a route even when it has never seen the service that
 * serves it: a request for one whose service has no node answers 503 (try again), not 404 (no such
 * thing). test/integration/contract.spec.ts checks this list against a running shop's routes.
 */

export const SHOP_ROUTES: readonly string[] = [
	// users
	"POST /api/auth/login",
	"POST /api/auth/logout",
	"POST /api/auth/password-reset",
	"POST /api/auth/password-reset/confirm",
	"POST /api/auth/refresh",
	"POST /api/auth/register",
	"POST /api/auth/verify-email",
	"POST /api/auth/confirm-email-change",
	"GET /api/me",
	"PATCH /api/me",
	"GET /api/me/addresses",
	"POST /api/me/addresses",
	"DELETE /api/me/addresses/:id",
	"GET /api/me/addresses/:id",
	"PATCH /api/me/addresses/:id",
	"POST /api/me/password",
	"POST /api/me/email",
	"POST /api/me/delete",
	"GET /api/users",
	"GET /api/users/:id",
	"PATCH /api/users/:id/role",
	"POST /api/users/:id/delete",
	"GET /api/me/wishlist",
	"POST /api/me/wishlist",
	"DELETE /api/me/wishlist/:productId",
	// products
	"GET /api/categories",
	"POST /api/categories",
	"PATCH /api/categories/:id",
	"POST /api/inventory/:variantId/adjust",
	"GET /api/inventory/:variantId/history",
	"GET /api/products",
	"POST /api/products",
	"DELETE /api/products/:id",
	"PATCH /api/products/:id",
	"POST /api/products/:id/variants",
	"PATCH /api/products/:id/variants/:variantId",
	"GET /api/products/:idOrSlug",
	// cart
	"DELETE /api/cart",
	"GET /api/cart",
	"POST /api/cart/items",
	"DELETE /api/cart/items/:variantId",
	"PATCH /api/cart/items/:variantId",
	"DELETE /api/cart/promo",
	"POST /api/cart/promo",
	"GET /api/promotions",
	"POST /api/promotions",
	"GET /api/promotions/:code",
	"PATCH /api/promotions/:code",
	// orders
	"GET /api/orders",
	"POST /api/orders",
	"GET /api/orders/:id",
	"POST /api/orders/:id/cancel",
	"GET /api/orders/:id/events",
	"POST /api/orders/:id/refund",
	"PATCH /api/orders/:id/status",
	// payments
	"POST /api/payments/test-authentication",
	"POST /api/payments/webhook",
	// notifications
	"GET /api/me/notifications",
	"GET /api/notifications",
	"POST /api/notifications/:id/retry",
	"GET /api/push/public-key",
	"GET /api/me/push-subscriptions",
	"POST /api/me/push-subscriptions",
	"DELETE /api/me/push-subscriptions/:id",
	"GET /api/me/push-devices",
	"POST /api/me/push-devices",
	"DELETE /api/me/push-devices/:id",
	// search
	"GET /api/search",
	"GET /api/search/autocomplete",
	"POST /api/search/rebuild",
	// analytics
	"GET /api/analytics/funnel",
	"GET /api/analytics/sales",
	"GET /api/analytics/top-products",
	// reviews
	"GET /api/products/:id/rating",
	"GET /api/products/:id/reviews",
	"POST /api/products/:id/reviews",
	"GET /api/reviews",
	"DELETE /api/reviews/:id",
	"GET /api/reviews/:id",
	"PATCH /api/reviews/:id/moderation",
	"POST /api/reviews/:id/votes",
	// api
	"GET /api/health",
	"GET /api/openapi.json",
];

/** Each route's method and path segments; `:name` matches one non-empty segment. */
const MATCHERS = SHOP_ROUTES.map((route) => {
	const [method, path] = route.split(" ");
	return { method, segments: path.split("/") };
});

function pathMatches(segments: string[], parts: string[]): boolean {
	return segments.length === parts.length && segments.every((s, i) => (s.startsWith(":") ? parts[i] !== "" : s === parts[i]));
}

/** Whether `method path` (a path without its query) is one of the shop's routes. */
export function isShopRoute(method: string, path: string): boolean {
	const m = method.toUpperCase();
	const parts = path.split("/");
	return MATCHERS.some((r) => r.method === m && pathMatches(r.segments, parts));
}

/** The methods of the shop's routes on this path (a path without its query): none when it is no route of the shop. */
export function shopRouteMethods(path: string): string[] {
	const parts = path.split("/");
	return [...new Set(MATCHERS.filter((r) => pathMatches(r.segments, parts)).map((r) => r.method))];
}
