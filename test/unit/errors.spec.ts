import { Errors } from "moleculer";
import { ConflictError, InsufficientStockError, NotFoundError, ServiceUnavailableError, invalidField, isDuplicate, mayHaveTakenEffect } from "../../lib/errors";

describe("mayHaveTakenEffect: whether a failed call may hide a done change", () => {
	test.each([
		["out of stock (409)", new InsufficientStockError({ variantId: "v", requested: 2, available: 1 }), false],
		["a conflict (409)", new ConflictError("no", "X"), false],
		["not found (404)", new NotFoundError("Variant"), false],
		["a rejected field (422)", invalidField("code", "used up"), false],
		["unavailable (503): the answer may be lost", new ServiceUnavailableError(), true],
		["a request timeout", new Errors.RequestTimeoutError({ action: "products.reserve", nodeID: "node-1" }), true],
		["a 500", new Errors.MoleculerError("boom", 500), true],
		["a plain error (a node that died)", new Error("checkout interrupted"), true],
		["nothing known", undefined, true],
	])("%s → %s", (_what, err, expected) => {
		expect(mayHaveTakenEffect(err)).toBe(expected);
	});
});

describe("isDuplicate: a write refused by a unique index", () => {
	test.each([
		["the collections' 409", new ConflictError("Duplicate orders entry", "DUPLICATE"), true],
		["another conflict", new ConflictError("taken", "CONFLICT"), false],
		["out of stock", new InsufficientStockError({ variantId: "v" }), false],
		["not an error", undefined, false],
		["null", null, false],
	])("%s → %p", (_name, err, expected) => {
		expect(isDuplicate(err)).toBe(expected);
	});
});
