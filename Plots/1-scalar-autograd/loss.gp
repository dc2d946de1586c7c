# Render with: gnuplot loss.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'loss.png'
set title 'Stage 1: MLP 2-16-16-1 on moons, hinge loss + L2' noenhanced
set xlabel 'step' noenhanced
set ylabel 'loss' noenhanced
set grid
set key below noenhanced
set y2label 'training accuracy' noenhanced
set y2tics
set ytics nomirror
plot 'loss.csv' skip 1 using 1:2 with lines lw 2 title 'loss', \
     'loss.csv' skip 1 using 1:3 axes x1y2 with lines lw 2 title 'training accuracy'
