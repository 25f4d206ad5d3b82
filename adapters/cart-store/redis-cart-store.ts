/**
 * Carts in Redis (REDIS_URL): per owner, a hash `cart:{owner}` of variantId → quantity, a hash
 * `cart:{owner}:prices` of variantId → the unit price the customer saw and its currency ("1999 USD"), and `cart:{owner}:meta`
 * with `promo` and `version`. The braces are a hash tag: the three keys share a cluster slot, so
 * each write is one Lua script over them, checking its limits and refreshing the 7-day TTL.
 * A checkout's claim is `cart:{owner}:checkout` (same slot): the order id, expiring with its lease.
 * While Redis is down every method throws a ServiceUnavailableError (503) at once (RedisLink).
 */
import type Redis from "ioredis";
import type { ChainableCommander } from "ioredis";
import { connectRedis, RedisLink, type OutageLogger } from "../redis-connection";
import { CART_TTL_SECONDS, type BoughtLines, type CartStore, type CheckoutClaim, type LineLimits, type LineResult, type LineWrite, type MergeLine, type StoredCart } from "./cart-store";

// Shared tail of every write: bump the version and refresh the TTL of all three keys.
const TOUCH = `
local function touch(ttl)
  local v = redis.call('HINCRBY', KEYS[3], 'version', 1)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
  return v
end
`;

const SCRIPTS = {
	// ARGV: variantId, quantity, seen price ("1999 USD"), maxQuantity, available, maxLines, ttl
	cartAdd: `${TOUCH}
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local want = cur + tonumber(ARGV[2])
if want > tonumber(ARGV[4]) then return {'quantity', cur} end
if want > tonumber(ARGV[5]) then return {'stock', cur} end
if cur == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) then return {'lines', cur} end
local q = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return {'ok', q, touch(ARGV[7])}`,
	// ARGV: variantId, quantity, seen price, maxQuantity, available, ttl
	cartSet: `${TOUCH}
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local want = tonumber(ARGV[2])
if cur == 0 then return {'missing', 0} end
if want > tonumber(ARGV[4]) then return {'quantity', cur} end
if want > tonumber(ARGV[5]) then return {'stock', cur} end
redis.call('HSET', KEYS[1], ARGV[1], want)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return {'ok', want, touch(ARGV[6])}`,
	// ARGV: variantId, ttl
	cartRemove: `${TOUCH}
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
touch(ARGV[2])
return 1`,
	// ARGV: code ('' removes it), ttl
	cartPromo: `${TOUCH}
if ARGV[1] == '' then redis.call('HDEL', KEYS[3], 'promo') else redis.call('HSET', KEYS[3], 'promo', ARGV[1]) end
return touch(ARGV[2])`,
	// ARGV: maxLines, ttl, then per line: variantId, quantity, seen price, cap
	cartMerge: `${TOUCH}
local lines = redis.call('HLEN', KEYS[1])
local changed = 0
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  local have = tonumber(redis.call('HGET', KEYS[1], id) or '0')
  local want = math.min(have + tonumber(ARGV[i + 1]), tonumber(ARGV[i + 3]))
  if want > have and (have > 0 or lines < tonumber(ARGV[1])) then
    if have == 0 then
      lines = lines + 1
      redis.call('HSET', KEYS[2], id, ARGV[i + 2])
    end
    redis.call('HSET', KEYS[1], id, want)
    changed = changed + 1
  end
end
if changed > 0 then touch(ARGV[2]) end
return changed`,
};

// Scripts that also take the claim key: the three cart keys, then `cart:{owner}:checkout`.
const CLAIM_SCRIPTS = {
	// ARGV: expected version ('' for any), ttl, order id whose claim goes ('' for none): the claim goes
	// even when the cart is kept, and a cart another order's checkout holds is kept. The version
	// survives so it never repeats. Then, for a cart changed since (see CartStore.clear), what was bought:
	// 'code:' and the code bought with ('' for none; no such argument: nothing bought is given), then per
	// line its variantId and quantity.
	cartClear: `${TOUCH}
if ARGV[3] ~= '' then
  local holder = redis.call('GET', KEYS[4])
  if holder == ARGV[3] then redis.call('DEL', KEYS[4])
  elseif holder then return 0 end
end
local v = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= v then
  if ARGV[4] == nil then return 0 end
  for i = 5, #ARGV, 2 do
    local have = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
    if have > 0 then
      if have <= tonumber(ARGV[i + 1]) then
        redis.call('HDEL', KEYS[1], ARGV[i])
        redis.call('HDEL', KEYS[2], ARGV[i])
      else
        redis.call('HSET', KEYS[1], ARGV[i], have - tonumber(ARGV[i + 1]))
      end
    end
  end
  local code = string.sub(ARGV[4], 6)
  if code ~= '' and redis.call('HGET', KEYS[3], 'promo') == code then redis.call('HDEL', KEYS[3], 'promo') end
  touch(ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HDEL', KEYS[3], 'promo')
touch(ARGV[2])
return 1`,
};

// Scripts over the claim key alone.
const HOLD_SCRIPTS = {
	// ARGV: order id, lease (ms). Returns the other order holding the cart, or '' once this one holds it.
	cartClaim: `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''`,
	// ARGV: order id. Only that order's claim is deleted.
	cartRelease: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`,
};

type ScriptFn = (k1: string, k2: string, k3: string, ...args: Array<string | number>) => Promise<unknown>;
type ClaimScriptFn = (k1: string, k2: string, k3: string, k4: string, ...args: Array<string | number>) => Promise<unknown>;
type HoldScriptFn = (key: string, ...args: Array<string | number>) => Promise<unknown>;
type CartRedis = Redis & Record<keyof typeof SCRIPTS, ScriptFn> & Record<keyof typeof CLAIM_SCRIPTS, ClaimScriptFn> & Record<keyof typeof HOLD_SCRIPTS, HoldScriptFn>;
type CartMulti = ChainableCommander & { cartClaim(key: string, orderId: string, leaseMs: number): CartMulti };

export interface RedisCartStoreOptions {
	ttlSeconds?: number;
	/** Key prefix (default "cart:"). */
	prefix?: string;
	/** Where an outage of Redis is reported (default: the console). */
	logger?: OutageLogger;
}

export class RedisCartStore implements CartStore {
	private link: RedisLink;
	private readonly ttl: number;
	private readonly prefix: string;

	constructor(urlOrClient: string | Redis, opts: RedisCartStoreOptions = {}) {
		const redis = typeof urlOrClient === "string" ? connectRedis(urlOrClient) : urlOrClient;
		for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { numberOfKeys: 3, lua });
		for (const [name, lua] of Object.entries(CLAIM_SCRIPTS)) redis.defineCommand(name, { numberOfKeys: 4, lua });
		for (const [name, lua] of Object.entries(HOLD_SCRIPTS)) redis.defineCommand(name, { numberOfKeys: 1, lua });
		this.link = new RedisLink(redis, "carts", opts.logger);
		this.ttl = opts.ttlSeconds ?? CART_TTL_SECONDS;
		this.prefix = opts.prefix ?? "cart:";
	}

	/** A command on the connection, or a 503 while Redis is unavailable. */
	private run<T>(command: (redis: CartRedis) => Promise<T>): Promise<T> {
		return this.link.run((redis) => command(redis as CartRedis));
	}

	/** The three keys of a cart; exposed for tests that look at the TTL. */
	keys(owner: string): [string, string, string] {
		const base = `${this.prefix}{${owner}}`;
		return [base, `${base}:prices`, `${base}:meta`];
	}

	/** The key of the cart's checkout claim. */
	claimKey(owner: string): string {
		return `${this.prefix}{${owner}}:checkout`;
	}

	async get(owner: string): Promise<StoredCart> {
		const [lines, prices, meta] = this.keys(owner);
		return toCart(await this.run(async (redis) => execValues(await redis.multi().hgetall(lines).hgetall(prices).hgetall(meta).exec())));
	}

	async addItem(owner: string, line: LineWrite, limits: LineLimits & { maxLines: number }): Promise<LineResult> {
		const res = await this.run((redis) => redis.cartAdd(...this.keys(owner), line.variantId, line.quantity, seenPrice(line), limits.maxQuantity, limits.available, limits.maxLines, this.ttl));
		return toLineResult(res);
	}

	async setQuantity(owner: string, line: LineWrite, limits: LineLimits): Promise<LineResult> {
		const res = await this.run((redis) => redis.cartSet(...this.keys(owner), line.variantId, line.quantity, seenPrice(line), limits.maxQuantity, limits.available, this.ttl));
		return toLineResult(res);
	}

	async removeItem(owner: string, variantId: string): Promise<boolean> {
		return (await this.run((redis) => redis.cartRemove(...this.keys(owner), variantId, this.ttl))) === 1;
	}

	async setPromo(owner: string, code: string | null): Promise<number> {
		return Number(await this.run((redis) => redis.cartPromo(...this.keys(owner), code ?? "", this.ttl)));
	}

	async clear(owner: string, version?: number, releaseFor?: string, bought?: BoughtLines): Promise<boolean> {
		const boughtArgs = bought ? [`code:${bought.promoCode ?? ""}`, ...bought.lines.flatMap((l) => [l.variantId, l.quantity])] : [];
		return (await this.run((redis) => redis.cartClear(...this.keys(owner), this.claimKey(owner), version ?? "", this.ttl, releaseFor ?? "", ...boughtArgs))) === 1;
	}

	async claimCheckout(owner: string, orderId: string, leaseMs: number): Promise<CheckoutClaim> {
		const [lines, prices, meta] = this.keys(owner);
		// MULTI/EXEC: the claim and the read are one step (the read is of no use when refused).
		const [heldBy, ...cart] = await this.run(async (redis) => execValues(await (redis.multi() as CartMulti).cartClaim(this.claimKey(owner), orderId, leaseMs).hgetall(lines).hgetall(prices).hgetall(meta).exec()));
		return heldBy ? { claimed: false, heldBy: heldBy as string } : { claimed: true, cart: toCart(cart) };
	}

	async releaseCheckout(owner: string, orderId: string): Promise<boolean> {
		return (await this.run((redis) => redis.cartRelease(this.claimKey(owner), orderId))) === 1;
	}

	async take(owner: string): Promise<StoredCart> {
		const [lines, prices, meta] = this.keys(owner);
		// MULTI/EXEC: the reads and the delete happen as one step, so two logins merge a guest cart once.
		return toCart(await this.run(async (redis) => execValues(await redis.multi().hgetall(lines).hgetall(prices).hgetall(meta).del(lines, prices, meta).exec())));
	}

	async mergeLines(owner: string, lines: MergeLine[], maxLines: number): Promise<number> {
		if (!lines.length) return 0;
		const args = lines.flatMap((l) => [l.variantId, l.quantity, seenPrice(l), l.cap]);
		return Number(await this.run((redis) => redis.cartMerge(...this.keys(owner), maxLines, this.ttl, ...args)));
	}

	async close(): Promise<void> {
		await this.link.close();
	}
}

/** A line's price as the prices hash keeps it: "1999 USD". */
function seenPrice(line: LineWrite): string {
	return `${line.unitPrice} ${line.currency}`;
}

/** The price and currency from the prices hash; a price stored before its currency was kept is a bare number. */
export function readSeenPrice(value: string | undefined): { unitPrice: number | null; currency: string | null } {
	if (value == null) return { unitPrice: null, currency: null };
	const [amount, currency] = value.split(" ");
	return { unitPrice: Number(amount), currency: currency || null };
}

/** The answers of a MULTI/EXEC, or its first error. */
function execValues(res: Array<[Error | null, unknown]> | null): unknown[] {
	const failed = res?.find(([err]) => err);
	if (!res || failed) throw failed?.[0] ?? new Error("Redis transaction aborted");
	return res.map(([, value]) => value);
}

/** A cart from the answers of HGETALL on its three keys. */
function toCart(hashes: unknown[]): StoredCart {
	const [quantities, prices, meta] = hashes as Array<Record<string, string>>;
	return {
		lines: Object.entries(quantities).map(([variantId, q]) => ({ variantId, quantity: Number(q), ...readSeenPrice(prices[variantId]) })),
		promoCode: meta.promo || null,
		version: Number(meta.version ?? 0),
	};
}

function toLineResult(res: unknown): LineResult {
	const [status, quantity, version] = res as [string, number, number?];
	if (status === "ok") return { ok: true, quantity, version: version! };
	return { ok: false, reason: status as "quantity" | "stock" | "lines" | "missing", quantity };
}
