/** Rating summaries: incremental apply/remove always equals a recount. */
import { applyRating, countRatings, emptyCounters, productRatingUpdate, ratingIncrement, summarize, summaryFromCounters, type RatingCounters } from "../../lib/rating-summary";

describe("rating summary", () => {
	test.each([
		[[], { average: 0, count: 0, histogram: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 } }],
		[[5], { average: 5, count: 1, histogram: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 1 } }],
		[[5, 4, 4], { average: 4.33, count: 3, histogram: { 1: 0, 2: 0, 3: 0, 4: 2, 5: 1 } }],
		[[1, 2], { average: 1.5, count: 2, histogram: { 1: 1, 2: 1, 3: 0, 4: 0, 5: 0 } }],
		[[5, 5, 4], { average: 4.67, count: 3, histogram: { 1: 0, 2: 0, 3: 0, 4: 1, 5: 2 } }],
	])("summarize(%j)", (ratings, expected) => expect(summarize(ratings)).toEqual(expected));

	test("the $inc of one rating moves count, sum and its star together", () => {
		expect(ratingIncrement(4, 1)).toEqual({ count: 1, sum: 4, r1: 0, r2: 0, r3: 0, r4: 1, r5: 0 });
		expect(ratingIncrement(2, -1)).toEqual({ count: -1, sum: -2, r1: 0, r2: -1, r3: 0, r4: 0, r5: 0 });
	});

	test.each([0, 6, 3.5, NaN])("rating %p is refused", (r) => expect(() => ratingIncrement(r, 1)).toThrow(RangeError));

	test("a random sequence of approvals and removals equals a recount at every step", () => {
		let seed = 42;
		const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
		let counters: RatingCounters = emptyCounters();
		const approved: number[] = [];
		for (let step = 0; step < 500; step++) {
			if (approved.length && random() < 0.4) {
				const [removed] = approved.splice(Math.floor(random() * approved.length), 1);
				counters = applyRating(counters, removed, -1);
			} else {
				const rating = 1 + Math.floor(random() * 5);
				approved.push(rating);
				counters = applyRating(counters, rating, 1);
			}
			expect(summaryFromCounters(counters)).toEqual(summarize(approved));
		}
		expect(counters).toEqual(countRatings(approved));
	});

	test("missing counters read as zero", () => {
		expect(summaryFromCounters(null)).toEqual(summarize([]));
		expect(summaryFromCounters({ count: 1, sum: 3, r3: 1 })).toEqual(summarize([3]));
	});
});

describe("the rating a review.moderated event carries to the product", () => {
	const rating = { average: 4.5, count: 2, histogram: { 1: 0, 2: 0, 3: 0, 4: 1, 5: 1 } };
	test.each([
		[{ productId: "p1", rating, ratingVersion: 3 }, { productId: "p1", rating: { average: 4.5, count: 2 }, version: 3 }],
		[{ productId: "p1", rating: { average: null, count: 0 }, ratingVersion: 4 }, { productId: "p1", rating: { average: 0, count: 0 }, version: 4 }],
		[{ productId: "p1", rating }, { productId: "p1", rating: { average: 4.5, count: 2 }, version: null }],
	])("%j → %j", (payload, expected) => {
		expect(productRatingUpdate(payload)).toEqual(expected);
	});

	test.each([
		["no product", { rating }],
		["no rating", { productId: "p1" }],
		["a count that is not a whole number", { productId: "p1", rating: { average: 4, count: 1.5 } }],
		["an average beyond 5", { productId: "p1", rating: { average: 7, count: 1 } }],
		["not an object", "review"],
		["null", null],
	])("refused: %s", (_what, payload) => {
		expect(productRatingUpdate(payload)).toBeNull();
	});
});
