# Render with: gnuplot ddp-overlap.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,220
set output 'ddp-overlap.png'
set title 'Data parallelism: rank 0''s backward and its buckets'' all-reduce (the last step)'
set xlabel 'time (ms)'
set ytics ('backward' 0, 'communication' 1)
set yrange [1.6:-0.6]
set xrange [0:29.40749046000043]
set style fill solid 0.9 border lc rgb 'white'
set key outside bottom center horizontal
set grid x
set linetype 1 lc rgb '#4c72b0'
set linetype 2 lc rgb '#dd8452'
set linetype 3 lc rgb '#55a868'
set linetype 4 lc rgb '#c44e52'
set linetype 5 lc rgb '#8172b3'
plot 'ddp-overlap.csv' skip 1 using (($2 + $3) / 2):1:(($3 - $2) / 2):(0.35):($4 + 1) with boxxyerror \
  lc variable notitle, \
  '' skip 1 using (($2 + $3) / 2):1:5 with labels tc rgb 'white' font ',8' notitle, \
  NaN with boxes lt 1 title 'backward', \
  NaN with boxes lt 2 title 'all-reduce'
