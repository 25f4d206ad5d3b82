/**
 * The bodies of the shop's success answers, as OpenAPI 3.0 schema objects (`components.schemas` of
 * the document lib/openapi.ts builds). Each one is read from the code that makes the answer (the
 * view function named beside it), not from what a client would like: test/integration/
 * openapi-responses.spec.ts checks real answers against them. An action names its body with
 * `openapi: { response: "Cart" }` (or `{ list: "Order" }` for a paged list).
 *
 * Conventions: ids are strings; money is an integer in minor units beside a `currency`; dates are
 * ISO 8601 strings (format date-time). A field is `required` only when the answer always has it,
 * and `nullable` when it can be null. Shapes a view function builds are closed
 * (additionalProperties: false), so a field renamed or added without its schema fails the test;
 * open-ended ones (an event's data, an OpenAPI document) say so.
 */
import { ORDER_STATUSES, PAYMENT_STATUSES } from "./order-state";
import { PAYMENT_STATUSES as PAYMENT_RECORD_STATUSES } from "./payment-state";
import { NOTIFICATION_KINDS } from "./notification-plan";

export type Schema = Record<string, any>;

/** An object whose properties are all required but the `optional` ones; closed unless `open`. */
function object(properties: Record<string, Schema>, opts: { optional?: string[]; open?: boolean; nullable?: boolean; description?: string } = {}): Schema {
	const required = Object.keys(properties).filter((k) => !opts.optional?.includes(k));
	return {
		type: "object",
		...(opts.description ? { description: opts.description } : {}),
		...(opts.nullable ? { nullable: true } : {}),
		properties,
		...(required.length ? { required } : {}),
		additionalProperties: opts.open ? true : false,
	};
}

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const arrayOf = (items: Schema): Schema => ({ type: "array", items });
const id: Schema = { type: "string" };
const str: Schema = { type: "string" };
const int: Schema = { type: "integer" };
const bool: Schema = { type: "boolean" };
const num: Schema = { type: "number" };
const nullableStr: Schema = { type: "string", nullable: true };
const date: Schema = { type: "string", format: "date-time" };
const nullableDate: Schema = { ...date, nullable: true };
const money: Schema = { type: "integer", description: "Minor units (cents) of `currency`" };
const nullableMoney: Schema = { ...money, nullable: true };
const currency: Schema = { type: "string", pattern: "^[A-Z]{3}$", description: "ISO 4217" };
const count: Schema = { type: "integer", minimum: 0 };
const orderStatus: Schema = { type: "string", enum: [...ORDER_STATUSES] };
/** An order's paymentStatus; a payment record's own status has no `cancelled` (lib/payment-state.ts). */
const paymentStatus: Schema = {
	type: "string",
	enum: [...PAYMENT_STATUSES],
	description:
		"pending: not settled yet (waiting for 3-D Secure, or being looked up); succeeded; failed: declined, or never reached the provider; cancelled: the order was cancelled before any money was taken, and none will be; refunded / partially_refunded",
};
const paymentRecordStatus: Schema = { type: "string", enum: [...PAYMENT_RECORD_STATUSES] };

/** products.getMany (lib/catalog-views.ts toProductRef): a product as a wishlist row shows it. */
const productRef = object({ id, name: str, slug: str, price: money, currency, image: nullableStr, isActive: bool });

/** publicAddress (lib/user-records.ts). */
const address = object({
	id,
	type: { type: "string", enum: ["shipping", "billing"] },
	line1: str,
	line2: nullableStr,
	city: str,
	state: nullableStr,
	postalCode: str,
	country: str,
	isDefault: bool,
	createdAt: date,
});

/** toProductSummary (lib/catalog-views.ts). Older rows may lack `description`; `price` is the "from" price. */
const productSummaryProps = {
	id,
	name: str,
	slug: str,
	description: str,
	categoryId: nullableStr,
	price: money,
	compareAtPrice: { ...nullableMoney, description: "The \"was\" price, shown only above `price`" },
	currency,
	image: { ...nullableStr, description: "The first image's URL" },
	images: arrayOf(ref("Image")),
	rating: ref("RatingSummary"),
	isActive: bool,
	createdAt: date,
};

/** customerView (services/notifications.service.ts): no bodies, they may carry one-time links. */
const notificationProps = {
	id,
	channel: { type: "string", enum: ["email", "sms", "push"] },
	template: { type: "string", enum: [...NOTIFICATION_KINDS] },
	recipient: { ...str, description: "The email address, the phone number, or for push the id of the browser's subscription" },
	subject: nullableStr,
	status: { type: "string", enum: ["queued", "sent", "failed", "outboxed"] },
	attempts: count,
	createdAt: date,
	sentAt: nullableDate,
};

const rangeFacet = (nullableTo: boolean) => object({ from: num, to: nullableTo ? { type: "number", nullable: true, description: "Inclusive; null for the open-ended top bucket" } : num, count });

export const RESPONSE_SCHEMAS = {
	// ---- gateway ----
	/** api.health */
	Health: object({ status: { type: "string", enum: ["ok", "starting", "stopping"] }, nodeID: str, services: arrayOf(str) }),
	/** api.openapi: this document. */
	OpenApiDocument: object({ openapi: str, info: { type: "object" }, paths: { type: "object" } }, { open: true }),

	// ---- users ----
	/** publicUser (lib/user-records.ts): never a hash. */
	User: object({
		id,
		email: { type: "string", format: "email" },
		firstName: nullableStr,
		lastName: nullableStr,
		phone: nullableStr,
		role: { type: "string", enum: ["customer", "admin"] },
		isVerified: bool,
		createdAt: date,
	}),
	/** users.tokensFor */
	AuthTokens: object({ accessToken: str, refreshToken: str, tokenType: { type: "string", enum: ["Bearer"] }, expiresIn: { type: "integer", description: "Seconds the access token lasts" } }),
	/** register, login: the user and a new session's tokens. */
	AuthSession: object({ user: ref("User"), accessToken: str, refreshToken: str, tokenType: { type: "string", enum: ["Bearer"] }, expiresIn: { type: "integer", description: "Seconds the access token lasts" } }),
	/** verify-email */
	UserAnswer: object({ user: ref("User") }),
	/** password-reset: the same whether or not the account exists. */
	Accepted: object({ accepted: { type: "boolean", enum: [true] } }),
	Address: address,
	/** The wishlist's rows; `product` is null when the catalog no longer has it. */
	WishlistItem: object({ productId: id, addedAt: date, product: { ...productRef, nullable: true } }),
	ProductRef: productRef,
	Notification: object(notificationProps),
	/** publicSubscription (mixins/push-subscriptions.mixin.ts). */
	PushSubscription: object({
		id,
		endpoint: { ...str, description: "The push service URL the browser gave" },
		expirationTime: { type: "integer", nullable: true, description: "As the browser gave it (ms since the epoch), or null" },
		createdAt: date,
		updatedAt: date,
	}),
	/** publicDevice (mixins/push-devices.mixin.ts). */
	PushDevice: object({
		id,
		token: { ...str, description: "The FCM registration token the app gave" },
		platform: { type: "string", enum: ["android", "ios"], nullable: true },
		createdAt: date,
		updatedAt: date,
	}),
	/** The shop's VAPID public key, base64url: the storefront passes it to PushManager.subscribe as applicationServerKey. */
	PushPublicKey: object({ publicKey: str }),
	/** adminView (services/notifications.service.ts). */
	NotificationAdmin: object({
		...notificationProps,
		userId: nullableStr,
		eventId: str,
		provider: nullableStr,
		providerId: nullableStr,
		error: nullableStr,
		nextAttemptAt: date,
		failedAt: nullableDate,
		linkRemovedAt: nullableDate,
	}),

	// ---- catalog ----
	/** A stored category (mixins/catalog-categories.mixin.ts answers the row itself). */
	Category: object({ id, name: str, slug: str, parentId: nullableStr, description: str, position: int, createdAt: date, updatedAt: date }, { optional: ["description", "position", "updatedAt"] }),
	/** buildCategoryTree (lib/category-tree.ts): a category and the ones below it. */
	CategoryNode: object(
		{ id, name: str, slug: str, parentId: nullableStr, description: str, position: int, createdAt: date, updatedAt: date, children: arrayOf(ref("CategoryNode")) },
		{ optional: ["description", "position", "updatedAt"] },
	),
	CategoryTree: arrayOf(ref("CategoryNode")),
	Image: object({ url: str, alt: str, position: int }),
	/** {average, count} of approved reviews (lib/catalog-views.ts ratingOf). */
	RatingSummary: object({ average: num, count }),
	/** A listing row, and the answer of an archive (DELETE /products/:id). */
	ProductSummary: object(productSummaryProps, { optional: ["description"] }),
	/** toVariantView: `price` is what it sells at (its own, else the product's); `compareAtPrice` the product's "was" price when above it, else null. */
	Variant: object({ id, sku: str, name: str, price: money, compareAtPrice: nullableMoney, options: { type: "object", additionalProperties: { type: "string" } }, stock: count }),
	/** toProductDetail (lib/catalog-views.ts): `price` and `compareAtPrice` are the product's own; `fromPrice` the least a variant sells at. */
	Product: object(
		{
			...productSummaryProps,
			compareAtPrice: nullableMoney,
			fromPrice: money,
			updatedAt: date,
			categoryPath: arrayOf(object({ id, name: str, slug: str })),
			variants: arrayOf(ref("Variant")),
			inStock: bool,
		},
		{ optional: ["description", "updatedAt"] },
	),
	/** products.adjust */
	InventoryAdjustment: object({ variantId: id, productId: id, sku: str, stock: count, delta: int }),
	/** A row of the audit trail (the stored inventory_transactions row). */
	InventoryTransaction: object(
		{
			id,
			variantId: id,
			productId: id,
			delta: int,
			quantity: int,
			type: { type: "string", enum: ["purchase", "sale", "reservation", "release", "adjustment", "return"] },
			reference: str,
			stockAfter: int,
			userId: str,
			recovered: bool,
			createdAt: date,
		},
		{ optional: ["quantity", "reference", "stockAfter", "userId", "recovered"], open: false },
	),

	// ---- cart ----
	/** A line as lib/cart-pricing.ts prices it; a line whose variant left the catalog has nulls and `archived`. */
	CartItem: object({
		variantId: id,
		productId: { ...id, nullable: true },
		sku: nullableStr,
		name: { ...nullableStr, description: "The product's name" },
		variantName: nullableStr,
		image: nullableStr,
		unitPrice: money,
		quantity: { type: "integer", minimum: 1 },
		lineTotal: money,
		currency,
		stock: int,
		archived: bool,
		priceChanged: bool,
		previousUnitPrice: nullableMoney,
		insufficientStock: bool,
		currencyMismatch: bool,
	}),
	/** cartView (services/cart.service.ts): `total` is the goods after the discount; `checkoutTotal` adds `shipping`. */
	Cart: object({
		items: arrayOf(ref("CartItem")),
		subtotal: money,
		discount: money,
		total: money,
		shipping: money,
		checkoutTotal: money,
		currency,
		promoCode: nullableStr,
		promoProblem: object({ reason: str, message: str }, { nullable: true, description: "Why the cart's code does not apply now" }),
	}),
	/** promotionView (services/cart.service.ts). */
	Promotion: object({
		id,
		code: str,
		type: { type: "string", enum: ["percent", "fixed"] },
		value: { type: "integer", description: "Percent (1..100), or minor units off for `fixed`" },
		minSubtotal: money,
		maxUses: { type: "integer", nullable: true, description: "null: unlimited" },
		usedCount: count,
		expiresAt: nullableDate,
		active: bool,
		currency,
		createdAt: date,
	}),

	// ---- orders and payments ----
	OrderItem: object(
		{ productId: id, variantId: id, sku: str, name: str, variantName: str, quantity: { type: "integer", minimum: 1 }, unitPrice: money, lineTotal: money },
		{ optional: ["sku", "variantName"] },
	),
	/** orderView (lib/order-state.ts); GET /orders lists the same shape. */
	Order: object({
		id,
		number: str,
		userId: id,
		status: orderStatus,
		paymentStatus,
		items: arrayOf(ref("OrderItem")),
		subtotal: money,
		discount: money,
		shipping: money,
		total: money,
		currency,
		promoCode: nullableStr,
		shippingAddress: object(
			{ addressId: id, type: str, line1: str, line2: nullableStr, city: str, state: nullableStr, postalCode: str, country: str },
			{ optional: ["type", "line2", "state"], open: true, description: "The address as it was at checkout" },
		),
		payment: object(
			{ cardBrand: nullableStr, cardLast4: nullableStr, clientSecret: { type: "string", description: "While the payment waits for 3-D Secure" } },
			{ optional: ["clientSecret"], nullable: true },
		),
		refundedAmount: money,
		trackingNumber: nullableStr,
		cancelReason: nullableStr,
		createdAt: date,
		updatedAt: date,
	}),
	/** orderEventLog (lib/order-state.ts): `data` depends on `type`. */
	OrderEvent: object({ seq: { type: "integer", minimum: 1 }, type: str, data: { type: "object", additionalProperties: true }, createdAt: date }),
	/** refundView (lib/payment-records.ts). */
	Refund: object(
		{
			id,
			orderId: id,
			paymentId: id,
			amount: money,
			currency,
			reason: str,
			status: { type: "string", enum: ["processing", "succeeded", "pending", "failed"] },
			failedLater: { type: "string", description: "Failed at the provider after it accepted the refund: why" },
			failureReason: { type: "string", description: "Refused by the provider (status failed, nothing refunded): why" },
			failedAt: date,
			sale: { type: "boolean", description: "false when the money was not a sale's (paid after the order was cancelled)" },
			providerRefundId: nullableStr,
			createdAt: date,
			updatedAt: date,
		},
		{ optional: ["failedLater", "failureReason", "failedAt", "sale"] },
	),
	/** chargeView (services/payments.service.ts). */
	Payment: object(
		{ id, orderId: id, status: paymentRecordStatus, amount: money, currency, cardBrand: nullableStr, cardLast4: nullableStr, clientSecret: { type: "string", description: "While it waits for 3-D Secure" } },
		{ optional: ["clientSecret"] },
	),
	/** payments.webhook */
	WebhookAck: object({ received: { type: "boolean", enum: [true] }, duplicate: { type: "boolean", enum: [true] } }, { optional: ["duplicate"] }),

	// ---- search ----
	SearchRow: object({ id, name: str, slug: str, price: money, currency, rating: num, ratingCount: count, inStock: bool, image: nullableStr }),
	/** The engines' answer (lib/search-query.ts SearchResult): the page envelope plus facets. */
	SearchResult: object({
		rows: arrayOf(ref("SearchRow")),
		total: count,
		page: { type: "integer", minimum: 1 },
		pageSize: { type: "integer", minimum: 1 },
		totalPages: count,
		facets: object({
			category: arrayOf(object({ value: str, label: str, count }, { optional: ["label"] })),
			currency: arrayOf(object({ value: str, count })),
			price: arrayOf(rangeFacet(true)),
			rating: arrayOf(rangeFacet(false)),
		}),
	}),
	Autocomplete: object({ suggestions: arrayOf(object({ text: str, productId: id })) }),
	/** search.rebuild */
	SearchRebuild: object({ indexed: count, removed: count, pages: count, tookMs: count }),

	// ---- reviews ----
	/** toPublic (services/reviews.service.ts): `userId` only for its author and admins. */
	Review: object(
		{
			id,
			productId: id,
			userId: id,
			authorName: nullableStr,
			rating: { type: "integer", minimum: 1, maximum: 5 },
			title: str,
			body: str,
			status: { type: "string", enum: ["pending", "approved", "rejected", "deleted"] },
			isVerifiedPurchase: bool,
			helpfulCount: count,
			notHelpfulCount: count,
			createdAt: date,
			moderatedAt: nullableDate,
		},
		{ optional: ["userId"] },
	),
	ReviewVote: object({ reviewId: id, helpful: bool, helpfulCount: count, notHelpfulCount: count }),
	/** summaryFromCounters (lib/rating-summary.ts), over approved reviews. */
	Rating: object({ average: num, count, histogram: object({ 1: count, 2: count, 3: count, 4: count, 5: count }) }),

	// ---- analytics (lib/analytics-reports.ts) ----
	SalesRow: object({ bucket: str, currency, orders: count, cancelled: count, grossRevenue: money, refunded: money, revenue: { ...money, description: "grossRevenue - refunded" } }),
	SalesReport: arrayOf(ref("SalesRow")),
	TopProducts: object({
		byUnits: arrayOf(object({ productId: id, name: nullableStr, units: count })),
		byRevenue: arrayOf(object({ productId: id, name: nullableStr, revenue: money, currency })),
	}),
	Funnel: object({
		views: count,
		addedToCart: count,
		checkoutStarted: count,
		paid: count,
		checkoutFailures: { type: "object", additionalProperties: count, description: "Started checkouts that failed, by reason" },
		rates: object({ viewToCart: num, cartToCheckout: num, checkoutToPaid: num, viewToPaid: num }),
	}),
} satisfies Record<string, Schema>;

export type SchemaName = keyof typeof RESPONSE_SCHEMAS;
