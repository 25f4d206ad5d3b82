/** Part 1 of the single-process crash test: see checkout-crash.cases.ts. */
import { checkoutCrashCases } from "./checkout-crash.cases";

checkoutCrashCases(0, 2);
