/** Prints the plain `N passed, N failed` line CI reads (Playwright's own summary is not one). */
import type { FullResult, Reporter, TestCase, TestResult } from '@playwright/test/reporter';

export default class SummaryReporter implements Reporter {
  private final = new Map<string, TestResult['status']>();

  onTestEnd(test: TestCase, result: TestResult) {
    this.final.set(test.id, result.status);
  }

  onEnd(result: FullResult) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const s of this.final.values()) {
      if (s === 'passed') passed++;
      else if (s === 'skipped') skipped++;
      else failed++;
    }
    if (result.status !== 'passed' && failed === 0) failed = 1; // setup failed, or interrupted
    console.log(`\nbrowser: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  }

  printsToStdio() {
    return false;
  }
}
