/**
 * The users service's collections on the Mongo adapter, without a server: the mongoose schemas
 * validate documents and declare the indexes the service relies on (the same specs drive NeDB).
 */
import mongoose from "mongoose";
import { buildMongooseSchema, Collection } from "../../mixins/collection";
import { userCollections } from "../../lib/user-records";

function model(name: string) {
	const modelName = `unit_${name}`;
	return mongoose.models[modelName] ?? mongoose.model(modelName, buildMongooseSchema(userCollections[name]), name);
}

function indexOf(name: string, fields: Record<string, number>) {
	const found = buildMongooseSchema(userCollections[name]).indexes().find(([f]) => JSON.stringify(f) === JSON.stringify(fields));
	return found?.[1];
}

describe("users collections on mongoose", () => {
	test("declares the indexes", () => {
		expect(indexOf("users", { email: 1 })).toMatchObject({ unique: true });
		expect(indexOf("user_sessions", { refreshHash: 1 })).toMatchObject({ unique: true });
		expect(indexOf("user_sessions", { spentHashes: 1 })).toBeDefined();
		expect(indexOf("user_sessions", { userId: 1 })).toBeDefined();
		expect(indexOf("user_sessions", { expiresAt: 1 })).toMatchObject({ expireAfterSeconds: expect.any(Number) });
		expect(indexOf("user_wishlist", { userId: 1, productId: 1 })).toMatchObject({ unique: true });
		expect(indexOf("user_tokens", { tokenHash: 1 })).toMatchObject({ unique: true });
		expect(indexOf("user_tokens", { expiresAt: 1 })).toMatchObject({ expireAfterSeconds: expect.any(Number) });
		expect(indexOf("user_addresses", { defaultFor: 1 })).toMatchObject({ unique: true, sparse: true });
		expect(indexOf("user_addresses", { userId: 1 })).toBeDefined();
	});

	test("a user needs an email and a hash; role is customer or admin; email is normalised", () => {
		const Users = model("users");
		const missing = new Users({ createdAt: new Date() }).validateSync();
		expect(Object.keys(missing!.errors).sort()).toEqual(["email", "passwordHash"]);
		const badRole = new Users({ email: "a@b.co", passwordHash: "x", role: "root", createdAt: new Date() }).validateSync();
		expect(Object.keys(badRole!.errors)).toEqual(["role"]);
		const ok = new Users({ email: "  Jane@Example.COM ", passwordHash: "x", createdAt: new Date() });
		expect(ok.validateSync()).toBeUndefined();
		expect(ok.get("email")).toBe("jane@example.com");
		expect(ok.get("role")).toBe("customer");
		expect(ok.get("isVerified")).toBe(false);
		expect(typeof ok.get("_id")).toBe("string");
	});

	test("an address needs its fields and a known type", () => {
		const Addresses = model("user_addresses");
		const bad = new Addresses({ userId: "u1", type: "home", createdAt: new Date() }).validateSync();
		expect(Object.keys(bad!.errors).sort()).toEqual(["city", "country", "line1", "postalCode", "type"]);
		const ok = new Addresses({ userId: "u1", type: "shipping", line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US", createdAt: new Date() });
		expect(ok.validateSync()).toBeUndefined();
	});

	test("sessions, tokens and wishlist entries validate", () => {
		const now = new Date();
		expect(Object.keys(new (model("user_sessions"))({}).validateSync()!.errors).sort()).toEqual(["createdAt", "expiresAt", "refreshHash", "userId"]);
		expect(new (model("user_sessions"))({ userId: "u", refreshHash: "h", createdAt: now, expiresAt: now }).get("revokedAt")).toBeNull();
		expect(Object.keys(new (model("user_tokens"))({ purpose: "login" }).validateSync()!.errors).sort()).toEqual(["createdAt", "email", "expiresAt", "purpose", "tokenHash", "userId"]);
		expect(new (model("user_wishlist"))({ userId: "u", productId: "p", addedAt: now }).validateSync()).toBeUndefined();
	});
});

describe("users collections on NeDB (the same specs)", () => {
	test("emails are unique and one default address per type is enforced", async () => {
		const users = new Collection("users", userCollections.users, {});
		const addresses = new Collection("user_addresses", userCollections.user_addresses, {});
		await Promise.all([users.connect(), addresses.connect()]);
		await users.insert({ email: "jane@example.com", passwordHash: "x" });
		await expect(users.insert({ email: "jane@example.com", passwordHash: "y" })).rejects.toMatchObject({ code: 409 });
		const a = { userId: "u1", type: "shipping", line1: "1", city: "c", postalCode: "p", country: "US" };
		await addresses.insert({ ...a, defaultFor: "u1:shipping" });
		await addresses.insert({ ...a }); // not default: no key, no conflict
		await expect(addresses.insert({ ...a, defaultFor: "u1:shipping" })).rejects.toMatchObject({ code: 409 });
		await addresses.insert({ ...a, type: "billing", defaultFor: "u1:billing" });
	});
});
