// Scale of the replay so the recorded viewport fits the space on screen
// (never enlarged: a phone recording stays sharp on a desktop).
export function fitScale(width, height, maxWidth, maxHeight) {
  if (!(width > 0) || !(height > 0) || !(maxWidth > 0)) return 1;
  const byHeight = maxHeight > 0 ? maxHeight / height : Infinity;
  return Math.min(1, maxWidth / width, byHeight);
}
