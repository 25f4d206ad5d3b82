import jwt from "jsonwebtoken";
import { signAccessToken, verifyAccessToken, TOKEN_AUDIENCE, TOKEN_ISSUER } from "../../lib/jwt";

describe("access tokens", () => {
	const secret = "unit-test-secret-of-enough-length-0123456789";
	const claims = { sub: "u1", role: "customer" as const, sid: "s1" };
	const forge = (payload: Record<string, unknown>, opts: jwt.SignOptions = {}) =>
		jwt.sign(payload, secret, { algorithm: "HS256", issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, ...opts });

	test("a token we sign verifies, with its claims and expiry", () => {
		const token = signAccessToken(claims, 60, secret);
		expect(verifyAccessToken(token, secret)).toEqual({ ...claims, exp: expect.any(Number) });
	});

	test.each([
		["no expiry", forge({ role: "customer", sid: "s1", sub: "u1" })],
		["expired", forge({ role: "customer", sid: "s1", sub: "u1" }, { expiresIn: -10 })],
		["an unknown role", forge({ role: "root", sid: "s1", sub: "u1" }, { expiresIn: 60 })],
		["no session", forge({ role: "customer", sub: "u1" }, { expiresIn: 60 })],
		["another audience", forge({ role: "customer", sid: "s1", sub: "u1" }, { expiresIn: 60, audience: "elsewhere" })],
		["another algorithm", forge({ role: "customer", sid: "s1", sub: "u1" }, { expiresIn: 60, algorithm: "HS512" })],
	])("refused: %s", (_what, token) => {
		expect(() => verifyAccessToken(token, secret)).toThrow();
	});
});
