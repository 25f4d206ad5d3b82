/**
 * Product reviews: one per user and product, shown once an admin approves it; helpful votes; and a
 * rating summary per product over approved reviews.
 *
 * A review's status only changes by a compare-and-set on its previous status, which also marks the
 * review `summaryPending`. The summary (counters, lib/rating-summary.ts) is then counted again from
 * the approved reviews and announced, and the mark cleared; a change a crash cut short is finished
 * the same way at start and by a timer. Counting again (not moving counters by one) is what makes
 * finishing twice harmless, so the summary always equals a recount.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin, aloneOnItsStore, type DbServiceThis } from "../mixins/db.mixin";
import { OutboxMixin, type OutboxThis } from "../mixins/outbox.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import type { Entity } from "../mixins/collection";
import type { AuthUser, ShopMeta } from "../mixins/types";
import { ForbiddenError, NotFoundError, ConflictError, isDuplicate } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { MULTILINE_TEXT, ONE_LINE_TEXT, maxChars } from "../lib/param-rules";
import { countRatings, summaryFromCounters, type RatingSummary } from "../lib/rating-summary";
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
	settleSummary(productId: string): Promise<RatingSummary & { version: number }>;
	countSummary(productId: string): Promise<RatingSummary & { version: number }>;
	finishStatusChange(ctx: Context | null, review: Review): Promise<void>;
	finishInterruptedChanges(staleMs: number): Promise<number>;
	announceRating(ctx: Context | null, review: Review, approved: boolean, summary: RatingSummary & { version: number }, extra?: Record<string, unknown>): Promise<void>;
	isVerifiedPurchase(ctx: Context, userId: string, productId: string): Promise<boolean>;
	requireProduct(ctx: Context, idOrSlug: string): Promise<string>;
	authorNameOf(ctx: Context, userId: string): Promise<string | null>;
}

interface ReviewsVars {
	finishTimer?: NodeJS.Timeout;
	/** The count of each product's summary running on this node (see settleSummary). */
	summaryLocks?: Map<string, Promise<unknown>>;
}
type ReviewsThis = Service & DbServiceThis & OutboxThis & ReviewsMethods & ReviewsVars;

const SORTS = {
	recent: { createdAt: -1 },
	helpful: { helpfulCount: -1, createdAt: -1 },
	rating: { rating: -1, createdAt: -1 },
} as const;

const idParam = { type: "string", min: 1, max: 100, trim: true } as const;

/**
 * Review text is shown to every shopper: control characters (a NUL, an escape sequence) are refused
 * with a 422 naming the field, as users does for names, rather than silently stripped, so the author
 * sees the text stored is the text sent. So are bidirectional overrides and isolates (U+202A-202E,
 * U+2066-2069), which make the rest of the line display in another order than it is written
 * ("Trojan Source" spoofing); the LRM/RLM marks (U+200E/200F) only nudge it and stay. A title is one
 * line, as a name; a body keeps its line breaks (LF, or CRLF from a form's textarea) and tabs.
 * Lengths count characters (code points), as the message says: an emoji is one.
 */
const reviewTitleRule = {
	type: "string", trim: true, optional: true, custom: maxChars(120),
	pattern: ONE_LINE_TEXT,
	messages: { stringPattern: "The title must not contain line breaks, control characters or bidirectional overrides." },
} as const;
const reviewBodyRule = {
	type: "string", trim: true, optional: true, custom: maxChars(5000),
	pattern: MULTILINE_TEXT,
	messages: { stringPattern: "The body must not contain bidirectional overrides or control characters other than line breaks and tabs." },
} as const;

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

const ReviewsService: ServiceSchema<Record<string, any>, ReviewsMethods, DbServiceThis & OutboxThis & ReviewsVars> = {
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
					// Set by a status change in the same write; cleared once the summary and its event follow.
					summaryPending: Boolean,
				},
				indexes: [{ fields: { userId: 1, productId: 1 }, unique: true }, { fields: { productId: 1, status: 1 } }, { fields: { summaryPending: 1 }, sparse: true }],
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
	settings: { rest: "/", interruptedChangeMs: 60_000 },

	async started(this: ReviewsThis) {
		// Alone on the store (no transporter, or an embedded store) no other node can be finishing a change:
		// all of them now; else once stale.
		const stale = (this.settings as { interruptedChangeMs: number }).interruptedChangeMs;
		await this.finishInterruptedChanges(aloneOnItsStore(this.broker) ? 0 : stale).catch((err: Error) => this.logger.error("Finishing interrupted review changes failed:", err));
		this.finishTimer = setInterval(() => {
			this.finishInterruptedChanges(stale).catch((err: Error) => this.logger.error("Finishing interrupted review changes failed:", err));
		}, stale);
		this.finishTimer.unref();
	},

	stopped(this: ReviewsThis) {
		clearInterval(this.finishTimer);
	},

	actions: {
		listForProduct: {
			rest: "GET /products/:id/reviews",
			openapi: { response: { list: "Review" } },
			params: { id: idParam, sort: { type: "enum", values: Object.keys(SORTS), default: "recent" }, ...pageParams, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string; sort: keyof typeof SORTS; page?: number; pageSize?: number }, ShopMeta>) {
				const productId = await this.requireProduct(ctx, ctx.params.id);
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const query = { productId, status: "approved" };
				const [rows, total] = await this.db.reviews.findWithCount(query, { sort: { ...SORTS[ctx.params.sort] }, offset: w.offset, limit: w.limit });
				return toPage((rows as Review[]).map((r) => toPublic(r, ctx.meta.user)), total, w.page, w.pageSize);
			},
		},

		rating: {
			rest: "GET /products/:id/rating",
			openapi: { response: "Rating" },
			params: { id: idParam, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string }, ShopMeta>) {
				const productId = await this.requireProduct(ctx, ctx.params.id);
				const { average, count, histogram } = summaryFromCounters((await this.db.rating_summaries.findOne({ productId })) as any);
				return { average, count, histogram };
			},
		},

		create: {
			rest: "POST /products/:id/reviews",
			openapi: { success: 201, response: "Review", responses: { 409: "Already reviewed this product" } },
			auth: "required",
			params: {
				id: idParam,
				rating: { type: "number", integer: true, min: 1, max: 5 },
				title: reviewTitleRule,
				body: reviewBodyRule,
				$$strict: "remove",
			},
			async handler(this: ReviewsThis, ctx: Context<{ id: string; rating: number; title?: string; body?: string }, ShopMeta>) {
				const userId = ctx.meta.user!.id;
				const productId = await this.requireProduct(ctx, ctx.params.id);
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
				// Stored, then the account asked: an erasure marks the account before it forgets the author's
				// reviews, so a review written while one runs is either among those it finds or refused here.
				try {
					await ctx.call("users.checkCanOrder", { userId });
				} catch (err) {
					await this.db.reviews.removeOne({ id: review.id });
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
			openapi: { response: "Review" },
			auth: "optional",
			params: { id: idParam, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string }, ShopMeta>) {
				return toPublic(await this.findVisible(ctx.params.id, ctx.meta.user), ctx.meta.user);
			},
		},

		/** The moderation queue. */
		list: {
			rest: "GET /reviews",
			openapi: { response: { list: "Review" } },
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
			openapi: { response: "Review", responses: { 409: "Changed by another request meanwhile" } },
			roles: ["admin"],
			params: { id: idParam, approved: { type: "boolean" }, $$strict: "remove" },
			async handler(this: ReviewsThis, ctx: Context<{ id: string; approved: boolean }, ShopMeta>) {
				const to: ReviewStatus = ctx.params.approved ? "approved" : "rejected";
				const change = await this.changeStatus(ctx.params.id, to, { moderatedAt: new Date(), moderatedBy: ctx.meta.user!.id, summaryPending: true });
				if (!change) return toPublic(await this.findVisible(ctx.params.id, ctx.meta.user), ctx.meta.user);
				await this.finishStatusChange(ctx, change.after);
				return toPublic(change.after, ctx.meta.user);
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
				const change = await this.changeStatus(review.id, "deleted", { summaryPending: true });
				if (!change) throw new NotFoundError("Review");
				await this.finishStatusChange(ctx, change.after);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/**
		 * The reviews of a user who deleted their account: each is deleted as its author would delete it
		 * (the product's rating counted again), its text and name blanked. Idempotent.
		 */
		forgetAuthor: {
			visibility: "public",
			params: { userId: "string" },
			async handler(this: ReviewsThis, ctx: Context<{ userId: string }, ShopMeta>) {
				const written = (await this.db.reviews.find({ userId: ctx.params.userId }, { fields: ["id", "status"] })) as Review[];
				for (const review of written) {
					const blank = { title: null, body: null, authorName: null };
					const change = review.status === "deleted" ? null : await this.changeStatus(review.id, "deleted", { ...blank, summaryPending: true }).catch((err) => (err?.code === 404 ? null : Promise.reject(err)));
					if (change) await this.finishStatusChange(ctx, change.after);
					else await this.db.reviews.updateOne({ id: review.id }, { $set: blank });
				}
				// Nor may the embedded file keep their text until it is next rewritten.
				if (written.length) await this.db.reviews.compact();
				return { forgotten: written.length };
			},
		},

		vote: {
			rest: "POST /reviews/:id/votes",
			openapi: { success: 201, response: "ReviewVote", responses: { 200: "The earlier vote replaced", 403: "Own review" } },
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

		/**
		 * The id of a product the shop sells (not unknown, not archived), named by its id or its slug as
		 * the product page is; else 404: its reviews are not shown, nor taken.
		 */
		async requireProduct(this: ReviewsThis, ctx: Context, idOrSlug: string) {
			const product = await ctx.call<{ id: string; isActive: boolean }, { idOrSlug: string }>("products.getRef", { idOrSlug }).catch((err) => {
				throw err?.code === 404 ? new NotFoundError("Product") : err;
			});
			if (product.isActive === false) throw new NotFoundError("Product");
			return product.id;
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

		/**
		 * The product's summary counted again from its approved reviews, stored with a compare-and-set on
		 * its version: doing it twice changes nothing, and of two racing counts the one that read the
		 * reviews last is stored (the version is read before the reviews, so an earlier count loses).
		 */
		settleSummary(productId: string) {
			// One count at a time per product on this node: concurrent ones would only lose the compare-and-set.
			const locks = (this.summaryLocks ??= new Map<string, Promise<unknown>>());
			const previous = locks.get(productId) ?? Promise.resolve();
			const mine = previous.catch(() => undefined).then(() => this.countSummary(productId));
			locks.set(productId, mine);
			void mine.catch(() => undefined).finally(() => {
				if (locks.get(productId) === mine) locks.delete(productId);
			});
			return mine;
		},

		async countSummary(productId: string) {
			for (let attempt = 0; ; attempt++) {
				const current = await this.db.rating_summaries.findOne({ productId });
				const approved = await this.db.reviews.find({ productId, status: "approved" }, { fields: ["rating"] });
				const counters = countRatings(approved.map((r) => r.rating as number));
				try {
					const stored = current
						? await this.db.rating_summaries.updateOne({ productId, version: current.version }, { $set: { ...counters, updatedAt: new Date() }, $inc: { version: 1 } })
						: await this.db.rating_summaries.insert({ productId, ...counters, version: 1, updatedAt: new Date() });
					if (stored) return { ...summaryFromCounters(stored as any), version: stored.version as number };
				} catch (err) {
					// Two first counts of one product raced on the unique index: count again.
					if (!isDuplicate(err)) throw err;
				}
				if (attempt >= 50) throw new ConflictError("The product's rating is being changed by other requests, try again", "CONCURRENT_UPDATE");
			}
		},

		/**
		 * What follows a review's status change, marked on the review by the same write: the summary is
		 * counted again, the rating announced, and a deleted review removed with its votes. Each step can
		 * be done again, so a change a crash cut short is finished by finishInterruptedChanges.
		 */
		async finishStatusChange(ctx: Context | null, review: Review) {
			const summary = await this.settleSummary(review.productId);
			const deleted = review.status === "deleted";
			await this.announceRating(ctx, review, review.status === "approved", summary, deleted ? { deleted: true } : {});
			if (deleted) await Promise.all([this.db.reviews.removeOne({ id: review.id }), this.db.votes.removeMany({ reviewId: review.id })]);
			else await this.db.reviews.updateOne({ id: review.id, status: review.status, summaryPending: true }, { $unset: { summaryPending: true } });
		},

		/** Status changes a crash cut short (marked, untouched for `staleMs`), finished. Returns how many. */
		async finishInterruptedChanges(staleMs: number) {
			const pending = (await this.db.reviews.find({ summaryPending: true, updatedAt: { $lte: new Date(Date.now() - staleMs) } }, { limit: 100 })) as Review[];
			for (const review of pending) {
				await this.finishStatusChange(null, review);
				this.logger.warn(`Finished the ${review.status} of review ${review.id} that a crash cut short.`);
			}
			return pending.length;
		},

		/**
		 * products and search store the rating from this event. `ratingVersion` grows with every
		 * change of the summary, so a consumer can ignore an older one that arrives late.
		 */
		async announceRating(ctx: Context | null, review: Review, approved: boolean, summary: RatingSummary & { version: number }, extra: Record<string, unknown> = {}) {
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
