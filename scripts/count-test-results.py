"""Counts outcomes across the TRX files of a test run and prints 'N passed, N failed[, N skipped]'."""
import glob, os, sys
import xml.etree.ElementTree as ET

ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
passed = failed = skipped = 0
files = glob.glob(os.path.join(sys.argv[1], "**", "*.trx"), recursive=True)
for f in files:
    for r in ET.parse(f).getroot().iterfind(".//t:UnitTestResult", ns):
        outcome = r.get("outcome")
        if outcome == "Passed": passed += 1
        elif outcome == "NotExecuted": skipped += 1
        else: failed += 1
line = f"{passed} passed, {failed} failed"
if skipped: line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed or not files or passed == 0 else 0)
