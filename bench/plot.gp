# plot.gp - time against node count, one line per method, from a bed CSV
# (bench/bed_bench.sh; columns: method,nodes,...,seconds(7),...).
#   gnuplot -e "csv='bench/out/bed-X.csv'; out='bench/out/bed-X.png'" bench/plot.gp
if (!exists("csv")) csv = 'bench/results/bed.csv'
if (!exists("out")) out = 'bench/results/bed.png'

methods = system("awk -F, 'NR > 1 && !seen[$1]++ { printf \"%s \", $1 }' ".csv)
info = system("awk -F, 'NR == 2 { printf \"F = %d MiB, links %d Mbit/s (B = %.0f Mbit/s), DEST on /dev/shm\", $5 / 1048576, $3, $4 }' ".csv)
rows(m) = sprintf("< awk -F, -v m=%s 'NR > 1 && $1 == m && $7 != \"nan\"' %s", m, csv)

set terminal pngcairo size 900,600 noenhanced font ",11"
set output out
set datafile separator ","
set title "Broadcasting one file to N emulated hosts\n".info
set xlabel "nodes N (emulated hosts)"
set ylabel "seconds (log scale)"
set logscale x 2
set logscale y
set xtics (2, 4, 8, 16, 32, 64)
set xrange [1.8:18]
set grid
set key outside right top
plot for [m in methods] rows(m) using 2:7 with linespoints \
     lw (m eq "p2pbcast" ? 3 : 1.5) pt 7 ps 1 title m
