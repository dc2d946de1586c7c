# Render with: gnuplot moons-loss.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'moons-loss.png'
set title 'Stage 2: MLP 2-16-16-1 on moons, hinge loss + L2' noenhanced
set xlabel 'step' noenhanced
set ylabel 'loss' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set y2label 'training accuracy' noenhanced
set y2tics
set ytics nomirror
set y2range [0:100]
set format y2 '%g%%'
plot 'moons-loss.csv' skip 1 using 1:2 with lines dt 1 lw 2.75 lc 1 notitle, \
     'moons-loss.csv' skip 1 every 16::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 2.75 lc 1 pt 7 ps 1.2 title 'loss', \
     'moons-loss.csv' skip 1 using 1:(100*$3) axes x1y2 with lines dt 2 lw 2 lc 2 notitle, \
     'moons-loss.csv' skip 1 every 16::8 using 1:(100*$3) axes x1y2 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 2 lc 2 pt 5 ps 1.2 title 'training accuracy'
