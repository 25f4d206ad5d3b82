/** Sealed one-time tokens: open with the same secret only, tampering detected, older raw tokens pass. */
import { openToken, sealToken } from "../../lib/sealed-token";

const secret = "a-shared-jwt-secret-of-some-length";
const token = "Vq3x_9-Hn2kP0aZt5LmYc8WbEr1uDj4sGfQ6oTi7XyA";

test("a sealed token opens to the token, and does not show it", () => {
	const sealed = sealToken(token, secret);
	expect(sealed).not.toContain(token);
	expect(sealed).toMatch(/^sealed\.v1\.[A-Za-z0-9_-]+$/);
	expect(openToken(sealed, secret)).toBe(token);
	// A fresh IV each time: the same token never seals to the same text.
	expect(sealToken(token, secret)).not.toBe(sealed);
});

test("another secret, an altered or truncated seal open to null", () => {
	const sealed = sealToken(token, secret);
	expect(openToken(sealed, "another-secret")).toBeNull();
	const body = sealed.slice("sealed.v1.".length);
	const flipped = body.slice(0, 20) + (body[20] === "A" ? "B" : "A") + body.slice(21);
	expect(openToken(`sealed.v1.${flipped}`, secret)).toBeNull();
	expect(openToken(sealed.slice(0, 30), secret)).toBeNull();
	expect(openToken("sealed.v1.", secret)).toBeNull();
});

test("a token from before sealing passes as it is; a missing one is null", () => {
	expect(openToken(token, secret)).toBe(token);
	expect(openToken(undefined, secret)).toBeNull();
	expect(openToken(42, secret)).toBeNull();
});
