/** Part 2 of the single-process crash test: see checkout-crash.cases.ts. */
import { checkoutCrashCases } from "./checkout-crash.cases";

checkoutCrashCases(1, 2);
