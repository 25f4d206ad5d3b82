/**
 * Product reviews: one per user and product, shown once an admin approves it; helpful votes; and a
 * rating summary per product over approved reviews.
 *
 * The summary is kept by counters (lib/rating-summary.ts) moved in the same step as a status
 * change: a review's status only changes by a compare-and-set on its previous status, and only the
 * caller whose compare-and-set succeeded moves the counters, so each approval is added once and
 * removed once whatever runs concurrently. The summary therefore always equals a recount.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin, type DbServiceThis } from "../mixins/db.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import type { Entity } from "../mixins/collection";
import type { AuthUser, ShopMeta } from "../mixins/types";
import { ForbiddenError, NotFoundError, ConflictError, isDuplicate } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { ratingIncrement, summaryFromCounters, type RatingSummary } from "../lib/rating-summary";
import { reviewAuthorName } from "../lib/review-author";

type ReviewStatus = "pending" | "approved" | "rejected" | "deleted";

interface Review extends Entity {
	productId: string;
	userId: string;
	rating: number;
	title: string;
	body: string;
	status: ReviewStatus;
	isVerifiedPurchase: boolean;
	/** "Bea S.", taken from the account when the review was written (lib/review-author). */
	authorName?: string | null;
	helpfulCount: number;
	notHelpfulCount: number;
	createdAt: Date;
	updatedAt: Date;
	moderatedAt?: Date;
	moderatedBy?: string;
}

interface ReviewsMethods {
	findVisible(id: string, user?: AuthUser | null): Promise<Review>;
	changeStatus(id: string, to: ReviewStatus, set?: Record<string, unknown>): Promise<{ before: Review; after: Review } | null>;
	moveSummary(productId: string, rating: number, direction: 1 | -1): Promise<RatingSummary & { version: number }>;
	readSummary(productId: string): Promise<RatingSummary & { version: number }>;
	announceRating(ctx: Context, review: Review, approved: boolean, summary: RatingSummary & { version: number }, extra?: Record<string, unknown>): Promise<void>;
	isVerifiedPurchase(ctx: Context, userId: string, productId: string): Promise<boolean>;
	requireProduct(ctx: Context, productId: string): Promise<void>;
	authorNameOf(ctx: Context, userId: string): Promise<string | null>;
}

type ReviewsThis = Service & DbServiceThis & OutboxThis & ReviewsMethods;

const SORTS = {
	recent: { createdAt: -1 },
	helpful: { helpfulCount: -1, createdAt: -1 },
	rating: { rating: -1, createdAt: -1 },
} as const;

const idParam = { type: "string", min: 1, max: 100, trim: true } as const;

/**
 * A review as `viewer` sees it. The author's account id goes only to the author and admins: for
 * anyone else it is an internal id that links a customer's reviews to one another and to the
 * account. The review is signed by `authorName`.
 */
function toPublic(r: Review, viewer: AuthUser | null | undefined) {
	const ownerView = !!viewer && (viewer.role === "admin" || viewer.id === r.userId);
	return {
		id: r.id,
		productId: r.productId,
		...(ownerView ? { userId: r.userId } : {}),
		authorName: r.authorName ?? null,
		rating: r.rating,
		title: r.title,
		body: r.body,
		status: r.status,
		isVerifiedPurchase: r.isVerifiedPurchase,
		helpfulCount: r.helpfulCount,
		notHelpfulCount: r.notHelpfulCount,
		createdAt: r.createdAt,
		moderatedAt: r.moderatedAt ?? null,
	};
}

const ReviewsService: ServiceSchema<Record<string, any>, ReviewsMethods, DbServiceThis & OutboxThis> = {
	name: "reviews",
	mixins: [
		DbMixin("reviews", {
			reviews: {
				fields: {
					productId: { type: String, required: true },
					userId: { type: String, required: true },
					rating: { type: Number, required: true, min: 1, max: 5 },
					title: String,
					body: String,
					status: { type: String, required: true },
					isVerifiedPurchase: Boolean,
					authorName: { type: String, default: null },
					helpfulCount: { type: Number, default: 0 },
					notHelpfulCount: { type: Number, default: 0 },
					createdAt: Date,
					updatedAt: Date,
					moderatedAt: Date,
					moderatedBy: String,
				},
				indexes: [{ fields: { userId: 1, productId: 1 }, unique: true }, { fields: { productId: 1, status: 1 } }],
			},
			votes: {
				fields: { reviewId: { type: String, required: true }, userId: { type: String, required: true }, helpful: Boolean, createdAt: Date, updatedAt: Date },
				indexes: [{ fields: { userId: 1, reviewId: 1 }, unique: true }, { fields: { reviewId: 1 } }],
			},
			// Counters of approved ratings (count, sum, r1..r5); average and histogram are derived.
			rating_summaries: {
				fields: {
					productId: { type: String, required: true },
					count: Number,
					sum: Number,
					r1: Number,
					r2: Number,
					r3: Number,
					r4: Number,
					r5: Number,
					version: Number,
					updatedAt: Date,
				},
				indexes: [{ fields: { productId: 1 }, unique: true }],
			},
		}),
		OutboxMixin("reviews"),
		HealthMixin,
	],
	settings: { rest: "/" },

	actions: {
		listForProduct: {
			rest: "GET /products/:id/reviews",
			params: { id: idParam, sort: { type: "enum", values: Object.keys(SORTS), default: "recent" }, ...pageParams, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string; sort: keyof typeof SORTS; page?: number; pageSize?: number }, ShopMeta>) {
				await this.requireProduct(ctx, ctx.params.id);
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const query = { productId: ctx.params.id, status: "approved" };
				const [rows, total] = await this.db.reviews.findWithCount(query, { sort: { ...SORTS[ctx.params.sort] }, offset: w.offset, limit: w.limit });
				return toPage((rows as Review[]).map((r) => toPublic(r, ctx.meta.user)), total, w.page, w.pageSize);
			},
		},

		rating: {
			rest: "GET /products/:id/rating",
			params: { id: idParam, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string }, ShopMeta>) {
				await this.requireProduct(ctx, ctx.params.id);
				const { average, count, histogram } = await this.readSummary(ctx.params.id);
				return { average, count, histogram };
			},
		},

		create: {
			rest: "POST /products/:id/reviews",
			openapi: { success: 201, responses: { 409: "Already reviewed this product" } },
			auth: "required",
			params: {
				id: idParam,
				rating: { type: "number", integer: true, min: 1, max: 5 },
				title: { type: "string", trim: true, max: 120, optional: true },
				body: { type: "string", trim: true, max: 5000, optional: true },
				$$strict: "remove",
			},
			async handler(this: ReviewsThis, ctx: Context<{ id: string; rating: number; title?: string; body?: string }, ShopMeta>) {
				const userId = ctx.meta.user!.id;
				const productId = ctx.params.id;
				await this.requireProduct(ctx, productId);
				const now = new Date();
				let review: Review;
				try {
					review = (await this.db.reviews.insert({
						productId,
						userId,
						rating: ctx.params.rating,
						title: ctx.params.title ?? "",
						body: ctx.params.body ?? "",
						status: "pending",
						isVerifiedPurchase: await this.isVerifiedPurchase(ctx, userId, productId),
						authorName: await this.authorNameOf(ctx, userId),
						helpfulCount: 0,
						notHelpfulCount: 0,
						createdAt: now,
						updatedAt: now,
					})) as Review;
				} catch (err: any) {
					if (isDuplicate(err)) throw new ConflictError("You have already reviewed this product", "ALREADY_REVIEWED", { productId });
					throw err;
				}
				await this.publish(ctx, "review.created", { reviewId: review.id, productId, userId, rating: review.rating, isVerifiedPurchase: review.isVerifiedPurchase });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/reviews/${review.id}`;
				return toPublic(review, ctx.meta.user);
			},
		},

		get: {
			rest: "GET /reviews/:id",
			auth: "optional",
			params: { id: idParam, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string }, ShopMeta>) {
				return toPublic(await this.findVisible(ctx.params.id, ctx.meta.user), ctx.meta.user);
			},
		},

		/** The moderation queue. */
		list: {
			rest: "GET /reviews",
			roles: ["admin"],
			params: {
				status: { type: "enum", values: ["pending", "approved", "rejected"], optional: true },
				productId: { ...idParam, optional: true },
				...pageParams,
				$$strict: "remove",
			},
			async handler(this: ReviewsThis, ctx: Context<{ status?: string; productId?: string; page?: number; pageSize?: number }, ShopMeta>) {
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const query: Record<string, unknown> = { status: ctx.params.status ?? { $in: ["pending", "approved", "rejected"] } };
				if (ctx.params.productId) query.productId = ctx.params.productId;
				// Oldest first: the queue is worked in the order reviews arrived.
				const [rows, total] = await this.db.reviews.findWithCount(query, { sort: { createdAt: 1 }, offset: w.offset, limit: w.limit });
				return toPage((rows as Review[]).map((r) => toPublic(r, ctx.meta.user)), total, w.page, w.pageSize);
			},
		},

		moderate: {
			rest: "PATCH /reviews/:id/moderation",
			openapi: { responses: { 409: "Changed by another request meanwhile" } },
			roles: ["admin"],
			params: { id: idParam, approved: { type: "boolean" }, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string; approved: boolean }, ShopMeta>) {
				const to: ReviewStatus = ctx.params.approved ? "approved" : "rejected";
				const change = await this.changeStatus(ctx.params.id, to, { moderatedAt: new Date(), moderatedBy: ctx.meta.user!.id });
				if (!change) return toPublic(await this.findVisible(ctx.params.id, ctx.meta.user), ctx.meta.user);
				const { before, after } = change;
				// Rejecting a pending review does not touch the summary; the decision is still announced.
				const direction = to === "approved" ? 1 : before.status === "approved" ? -1 : 0;
				const summary = direction ? await this.moveSummary(after.productId, after.rating, direction) : await this.readSummary(after.productId);
				await this.announceRating(ctx, after, ctx.params.approved, summary);
				return toPublic(after, ctx.meta.user);
			},
		},

		remove: {
			rest: "DELETE /reviews/:id",
			openapi: { success: 204, responses: { 409: "Changed by another request meanwhile" } },
			auth: "required",
			params: { id: idParam, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string }, ShopMeta>) {
				const user = ctx.meta.user!;
				const review = (await this.db.reviews.findById(ctx.params.id)) as Review | null;
				// Another user's review is a 404: we never confirm that it exists.
				if (!review || review.status === "deleted" || (review.userId !== user.id && user.role !== "admin")) throw new NotFoundError("Review");
				const change = await this.changeStatus(review.id, "deleted");
				if (!change) throw new NotFoundError("Review");
				if (change.before.status === "approved") {
					const summary = await this.moveSummary(review.productId, review.rating, -1);
					await this.announceRating(ctx, change.after, false, summary, { deleted: true });
				}
				await Promise.all([this.db.reviews.removeOne({ id: review.id }), this.db.votes.removeMany({ reviewId: review.id })]);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		vote: {
			rest: "POST /reviews/:id/votes",
			openapi: { success: 201, responses: { 200: "The earlier vote replaced", 403: "Own review" } },
			auth: "required",
			params: { id: idParam, helpful: { type: "boolean" }, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string; helpful: boolean }, ShopMeta>) {
				const userId = ctx.meta.user!.id;
				const { id: reviewId, helpful } = ctx.params;
				const review = (await this.db.reviews.findById(reviewId)) as Review | null;
				if (!review || review.status !== "approved") throw new NotFoundError("Review");
				if (review.userId === userId) throw new ForbiddenError("You cannot vote on your own review");

				const field = helpful ? "helpfulCount" : "notHelpfulCount";
				const other = helpful ? "notHelpfulCount" : "helpfulCount";
				let inc: Record<string, number> | null;
				try {
					await this.db.votes.insert({ reviewId, userId, helpful, createdAt: new Date(), updatedAt: new Date() });
					inc = { [field]: 1 };
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/reviews/${reviewId}`;
				} catch (err: any) {
					if (!isDuplicate(err)) throw err;
					// A second vote replaces the first: only the caller that actually flips it moves the counts.
					const flipped = await this.db.votes.updateOne({ reviewId, userId, helpful: !helpful }, { $set: { helpful, updatedAt: new Date() } });
					inc = flipped ? { [field]: 1, [other]: -1 } : null;
				}
				const after = (inc ? await this.db.reviews.updateOne({ id: reviewId }, { $inc: inc }) : await this.db.reviews.findById(reviewId)) as Review | null;
				if (!after) {
					// Deleted in between (its votes with it): leave no orphan vote behind.
					await this.db.votes.removeOne({ reviewId, userId });
					throw new NotFoundError("Review");
				}
				return { reviewId, helpful, helpfulCount: after.helpfulCount, notHelpfulCount: after.notHelpfulCount };
			},
		},
	},

	methods: {
		/** The name the review is shown under, taken when it is written; a review is not refused for want of it. */
		async authorNameOf(this: ReviewsThis, ctx: Context, userId: string) {
			try {
				return reviewAuthorName(await ctx.call<{ firstName?: string | null; lastName?: string | null }, { id: string }>("users.get", { id: userId }));
			} catch (err) {
				this.logger.warn(`Author name of user ${userId} not available:`, (err as Error).message);
				return null;
			}
		},

		/** A product the shop sells (not unknown, not archived), else 404: its reviews are not shown, nor taken. */
		async requireProduct(this: ReviewsThis, ctx: Context, productId: string) {
			const [product] = await ctx.call<Array<{ id: string; isActive: boolean }>, { ids: string[] }>("products.getMany", { ids: [productId] });
			if (!product || product.isActive === false) throw new NotFoundError("Product");
		},

		/** Approved reviews to anyone; others to their author and admins; 404 otherwise. */
		async findVisible(id: string, user?: AuthUser | null) {
			const review = (await this.db.reviews.findById(id)) as Review | null;
			const visible = review && review.status !== "deleted" && (review.status === "approved" || user?.role === "admin" || user?.id === review.userId);
			if (!visible) throw new NotFoundError("Review");
			return review!;
		},

		/**
		 * Compare-and-set from the status read just before; retried when another request changed it
		 * first. Null when the review is already in `to` (nothing to do); 404 when it is gone.
		 */
		async changeStatus(id: string, to: ReviewStatus, set: Record<string, unknown> = {}) {
			for (let attempt = 0; attempt < 5; attempt++) {
				const before = (await this.db.reviews.findById(id)) as Review | null;
				if (!before || before.status === "deleted") throw new NotFoundError("Review");
				if (before.status === to) return null;
				const after = (await this.db.reviews.updateOne({ id, status: before.status }, { $set: { ...set, status: to, updatedAt: new Date() } })) as Review | null;
				if (after) return { before, after };
			}
			throw new ConflictError("The review is being changed by another request, try again", "CONCURRENT_UPDATE");
		},

		async moveSummary(productId: string, rating: number, direction: 1 | -1) {
			const update = { $inc: { ...ratingIncrement(rating, direction), version: 1 }, $set: { updatedAt: new Date() } };
			let doc;
			try {
				doc = await this.db.rating_summaries.updateOne({ productId }, update, { upsert: true });
			} catch (err: any) {
				// Two first upserts of one product raced on the unique index: the second one updates.
				if (!isDuplicate(err)) throw err;
				doc = await this.db.rating_summaries.updateOne({ productId }, update);
			}
			return { ...summaryFromCounters(doc as any), version: doc?.version ?? 0 };
		},

		async readSummary(productId: string) {
			const doc = await this.db.rating_summaries.findOne({ productId });
			return { ...summaryFromCounters(doc as any), version: doc?.version ?? 0 };
		},

		/**
		 * products and search store the rating from this event. `ratingVersion` grows with every
		 * change of the summary, so a consumer can ignore an older one that arrives late.
		 */
		async announceRating(ctx: Context, review: Review, approved: boolean, summary: RatingSummary & { version: number }, extra: Record<string, unknown> = {}) {
			const { version, ...rating } = summary;
			await this.publish(ctx, "review.moderated", { reviewId: review.id, productId: review.productId, approved, rating, ratingVersion: version, ...extra });
		},

		/** A failure of the orders service must not block a review: it is then just not verified. */
		async isVerifiedPurchase(ctx: Context, userId: string, productId: string) {
			try {
				const res = await ctx.call<{ delivered: boolean }, { userId: string; productId: string }>("orders.hasDeliveredProduct", { userId, productId });
				return res?.delivered === true;
			} catch (err) {
				this.logger.warn(`orders.hasDeliveredProduct failed, review stored as not verified: ${(err as Error).message}`);
				return false;
			}
		},
	},
};

export default ReviewsService;
