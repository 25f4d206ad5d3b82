/**
 * The client's address behind `trustedHops` proxies (TRUST_PROXY). Each proxy appends the address
 * it received the request from to X-Forwarded-For, so in the chain [...X-Forwarded-For, socket]
 * the entry `trustedHops` from the right is the one our outermost proxy saw; everything left of it
 * is whatever the client chose to send, and must not key a rate limit.
 */
export function clientAddress(forwardedFor: string | string[] | undefined, socketAddress: string | undefined, trustedHops: number): string {
	const socket = socketAddress || "unknown";
	if (trustedHops <= 0 || !forwardedFor) return socket;
	const entries = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor)
		.split(",")
		.map((s) => s.trim())
		.filter(Boolean);
	const chain = [...entries, socket];
	// A shorter chain than the proxies we were told of: the leftmost entry is the farthest we can see.
	return chain[Math.max(0, chain.length - 1 - trustedHops)];
}
