"""What a drawn OHIF viewport looks like, as JavaScript to evaluate in the page (the OHIF test and benchmark share it)."""

# Lit pixels and their spread in the viewport's 2D canvas (Cornerstone3D copies its WebGL output there).
CANVAS_STATS = """(() => {
  const canvas = document.querySelector('canvas.cornerstone-canvas');
  if (!canvas || !canvas.width) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0, sum = 0, sum2 = 0;
  for (let i = 0; i < data.length; i += 4) { const v = data[i]; sum += v; sum2 += v * v; if (v > 10) lit++; }
  const n = data.length / 4, mean = sum / n;
  return {lit: lit / n, sd: Math.sqrt(Math.max(0, sum2 / n - mean * mean))};
})()"""

# The stats when the viewport holds an image (over 5 % of it lit, spread over 10 grey levels), else null.
DRAWN = f"(s => s && s.lit > 0.05 && s.sd > 10 ? s : null)({CANVAS_STATS})"
