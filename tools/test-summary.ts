/**
 * Prints vitest's JSON report as the plain closing line CI reads in any
 * language ("N passed, N failed, N skipped") and exits non-zero on failure.
 *
 * usage: node tools/test-summary.ts dist/test-results.json
 */
import fs from 'node:fs';

const file = process.argv[2] ?? 'dist/test-results.json';
const report = JSON.parse(fs.readFileSync(file, 'utf8')) as {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numFailedTestSuites: number;
};
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(report.numFailedTests > 0 || report.numFailedTestSuites > 0 || report.numPassedTests === 0 ? 1 : 0);
